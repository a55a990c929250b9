"""python manage.py sync SYSTEM [STREAM] [--full] [--async]"""

from django.core.management.base import BaseCommand, CommandError

from customers.errors import ApplicationError
from integrations import sync, tasks
from integrations.connectors.base import ConnectorError
from integrations.models import Connection


class Command(BaseCommand):
    help = "Pull one stream, or every stream, of a system through the pipeline."

    def add_arguments(self, parser):
        parser.add_argument("system")
        parser.add_argument("stream", nargs="?")
        parser.add_argument("--full", action="store_true", help="from the start, not the cursor")
        parser.add_argument(
            "--async", action="store_true", dest="enqueue", help="enqueue Celery tasks instead"
        )

    def handle(self, *args, **opts):
        connection = (
            Connection.objects.select_related("system").filter(system__name=opts["system"]).first()
        )
        if connection is None:
            raise CommandError(f"no connection for system {opts['system']!r}")
        streams = [opts["stream"]] if opts["stream"] else list(connection.streams)
        unknown = [s for s in streams if s not in connection.streams]
        if unknown:
            raise CommandError(
                f"unknown stream {unknown[0]!r}; {opts['system']} has: "
                + ", ".join(connection.streams)
            )
        failed = False
        for stream in streams:
            if opts["enqueue"]:
                tasks.sync_stream.delay(connection.pk, stream, opts["full"])
                self.stdout.write(f"{opts['system']}/{stream}: enqueued")
                continue
            try:
                run = sync.stream_sync(
                    connection_id=connection.pk, stream=stream, full=opts["full"]
                )
            except (ConnectorError, ApplicationError) as exc:
                failed = True
                self.stderr.write(f"{opts['system']}/{stream}: {getattr(exc, 'message', exc)}")
                continue
            self.stdout.write(
                f"{opts['system']}/{stream}: {run.status} — fetched {run.fetched}, "
                f"created {run.created}, updated {run.updated}, unchanged {run.unchanged}, "
                f"stale {run.stale}, failed {run.failed}; cursor {run.cursor_before or '∅'} → "
                f"{run.cursor_after or '∅'}"
            )
        if failed:
            raise CommandError("some streams failed; see above and the sync health page")
