"""Argument types shared by the didit_* management commands.

argparse turns the ValueError into "invalid <name> value" naming the option.
"""


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number
