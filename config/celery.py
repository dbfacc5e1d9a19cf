"""The Celery application; start a worker with `celery -A config worker`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _keep_the_worker_alive_when_redis_drops() -> None:
    """A Redis outage must not end the worker process (issue 13 item 11).

    Celery 5.7 closes the broken connection twice on losing it; by the second close kombu
    has let go of the connection's settings, so putting the messages the worker holds
    unacknowledged (an approval's countdown, an acks_late task) back on the queue raises
    AttributeError, which Celery takes as "Unrecoverable error" and the worker exits.
    Without a connection they cannot be put back anyway: they stay in Redis's unacked set,
    which kombu restores after the visibility timeout, and the sweep stands in for lost
    approval triggers and closes runs no worker took. So that close skips the restore.
    """
    from kombu.transport import redis as kombu_redis

    restore = kombu_redis.QoS.restore_unacked

    def restore_unacked(self, client=None):
        if client is None and getattr(self.channel.connection, "client", None) is None:
            return None
        return restore(self, client)

    kombu_redis.QoS.restore_unacked = restore_unacked  # type: ignore[method-assign]


_keep_the_worker_alive_when_redis_drops()
