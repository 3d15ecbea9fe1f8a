import secrets

from channels.layers import get_channel_layer
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .groups import group_name


@csrf_exempt
async def push(request):
    """POST the frame to send as the body; ``?group=a&group=b`` names the groups (default all).

    One ``group_send`` per group, awaited before answering, as the app's
    webhook publishes to the owner's group and the admin group.
    """
    if request.method != "POST":
        return HttpResponse(status=405)
    layer = get_channel_layer()
    text = request.body.decode()
    for name in request.GET.getlist("group") or ["all"]:
        await layer.group_send(group_name(name), {"type": "bench.push", "text": text})
    return HttpResponse(b"ok", content_type="text/plain")


@csrf_exempt
async def ticket(request):
    """A stand-in ticket endpoint: 256 random bits, no authentication, no database.

    For bench_handshake's floor: "a request, then a connect" on the bare
    server costs what any ticket scheme costs before doing any work.
    """
    if request.method != "POST":
        return HttpResponse(status=405)
    return JsonResponse({"ticket": secrets.token_urlsafe(32)}, status=201)
