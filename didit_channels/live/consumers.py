"""Placeholder until the live channel lands: refuses every ticket with 4001."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class StatusConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.accept()
        await self.close(code=4001)
