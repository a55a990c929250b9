import logging

from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import tasks
from .webhooks import WebhookInvalid, WebhookRejected, webhook_receive

logger = logging.getLogger(__name__)


@csrf_exempt
@login_not_required
@require_POST
def webhook(request: HttpRequest, system: str) -> JsonResponse:
    """POST /hooks/<system>/: signed events land first and are processed by a task."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        receipt = webhook_receive(
            system_name=system,
            headers=headers,
            body=request.body,
            remote_addr=request.META.get("REMOTE_ADDR", ""),
        )
    except WebhookRejected as exc:
        return JsonResponse({"error": exc.message}, status=401)
    except WebhookInvalid as exc:
        return JsonResponse({"error": exc.message}, status=400)
    if receipt.record_id is not None and not receipt.duplicate:
        record_id = receipt.record_id
        transaction.on_commit(lambda: tasks.replay_records.delay([record_id]))
    status = 200 if receipt.duplicate or receipt.record_id is None else 202
    return JsonResponse(
        {
            "event": receipt.event_id,
            "type": receipt.event_type,
            "duplicate": receipt.duplicate,
            "routed": receipt.record_id is not None,
        },
        status=status,
    )
