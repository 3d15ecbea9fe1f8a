from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer

from .groups import group_name


class BareConsumer(AsyncWebsocketConsumer):
    """Joins every ``?group=<name>`` (default ``all``), then forwards every group message.

    After accepting it sends one ``{"type":"hello"}`` frame, the same "you are
    subscribed now" signal the app's socket gives, so load generators wait for
    the first frame on both servers alike.
    """

    async def connect(self):
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.joined = []
        for name in query.get("group", ["all"])[:4]:
            await self.channel_layer.group_add(group_name(name), self.channel_name)
            self.joined.append(group_name(name))
        await self.accept()
        await self.send(text_data='{"type":"hello"}')

    async def disconnect(self, code):
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def bench_push(self, event):
        await self.send(text_data=event["text"])
