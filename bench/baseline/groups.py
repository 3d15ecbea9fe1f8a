import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def group_name(name: str) -> str:
    return "bench." + _UNSAFE.sub("_", name)[:80]
