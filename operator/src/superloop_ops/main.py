"""kopf entrypoint: ``kopf run -m superloop_ops.main``.

Importing this module only registers handlers; nothing here talks to the API server or reads
the environment at import time. ``@kopf.on.startup`` reads the settings once, configures kopf
(peering, Events, JSON logs, bookkeeping in annotations), builds the Kubernetes client edge, the
clock and the metrics registry, starts the metrics endpoint, and puts everything into ``memo``
for the handlers (``memo.operator``, plus ``memo.settings`` / ``memo.edge`` / ``memo.clock`` /
``memo.metrics`` for controllers of the other kinds).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from typing import Any

import kopf

from superloop_ops import metrics as metrics_mod
from superloop_ops import settings as settings_mod
from superloop_ops.clock import SystemClock
from superloop_ops.controllers.loop_pass_pool import LoopPassPool
from superloop_ops.controllers.loop_scheduler import PassScheduler
from superloop_ops.core.common.shards import Shard, compute_watch_selector
from superloop_ops.handlers import fleet as _fleet_handlers  # registers handlers
from superloop_ops.handlers import fleet_policy as _fleet_policy_handlers  # registers handlers
from superloop_ops.handlers import handoff_intent as _handoff_intent_handlers  # registers handlers
from superloop_ops.handlers import loop as _loop_handlers  # registers handlers
from superloop_ops.handlers import promotion_apply as _promotion_apply_handlers  # registers handlers
from superloop_ops.handlers import shard_labels as _shard_label_handlers  # registers handlers
from superloop_ops.handlers.context import OperatorContext, fetch_context
from superloop_ops.k8s import edge as k8s_edge
from superloop_ops.k8s.edge import GROUP
from superloop_ops.k8s.fleet_edge import KubernetesFleetEdge

__all__ = [
    "bound_kopf",
    "build_pass_pool",
    "configure_persistence",
    "configure_watch_selectors",
    "on_cleanup",
    "on_startup",
    "quiet_url_logging",
    "quiet_watch_feed_logging",
    "start_loop_scheduler",
    "stop_loop_scheduler",
]

_REGISTERED = (
    _loop_handlers,
    _handoff_intent_handlers,
    _fleet_handlers,
    _fleet_policy_handlers,
    _promotion_apply_handlers,
    _shard_label_handlers,
)
log = logging.getLogger(__name__)


# Loggers that write full request URLs at INFO. A Slack incoming-webhook URL (and many webhook
# URLs) is itself a secret, and kopf runs at INFO, so these must never log below WARNING.
URL_LOGGERS = ("httpx", "httpcore", "urllib3")


def quiet_url_logging() -> None:
    """Keep HTTP client libraries from logging request URLs (they may carry secrets)."""
    for name in URL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


# Watch-event handlers that run on every event of every Loop (or HandoffIntent) a replica sees.
# kopf logs each handler's success at INFO: at 10,000 Loops that was one line per Loop event
# on every shard (shard 0 logged 57,000 lines in ten minutes), the operator's log drowned in it.
WATCH_FEED_HANDLERS = ("on_loop_event", "label_loop_shard", "label_intent_shard")


class _WatchFeedSuccessFilter(logging.Filter):
    """Drops kopf's "Handler '<name>' succeeded." for the watch-feed handlers (their failures stay)."""

    _quiet = frozenset(f"Handler {name!r} succeeded." for name in WATCH_FEED_HANDLERS)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and record.getMessage() in self._quiet)


def quiet_watch_feed_logging() -> None:
    """Keep the per-event success lines of the watch-feed handlers out of the log (once)."""
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(existing, _WatchFeedSuccessFilter) for existing in objects.filters):
        objects.addFilter(_WatchFeedSuccessFilter())


def configure_persistence(settings: kopf.OperatorSettings, shard: Shard) -> None:
    """kopf's bookkeeping in annotations, and its finalizer; each shard under its own prefix.

    A Loop can be seen by more than one shard (shard 0 watches them all). With one annotation
    prefix they overwrote each other's bookkeeping; kopf marks its prefix, so the other shards
    leave these annotations out of an object's essence. No Loop handler needs a finalizer any
    more (no daemon: the periodic passes come from one scheduler), so kopf adds none and each
    shard removes the one it once added under its own name (with one shared name, the owner
    added it and the others removed it).
    """
    if shard.count == 1:
        return  # kopf's defaults: objects keep the bookkeeping they have today
    prefix = f"shard-{shard.index}.ops.superloop.dev"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=prefix)
    settings.persistence.finalizer = f"{prefix}/KopfFinalizerMarker"


def configure_watch_selectors(settings: kopf.OperatorSettings, shard: Shard) -> None:
    """A shard other than 0 asks the API server for its own Loops and HandoffIntents only.

    Without a selector every shard received, decoded and filtered every object of the cluster
    (each shard's watch cost grew with the whole fleet). Shard 0 labels the objects that have
    no shard label yet (``handlers.shard_labels``), which brings them into their shard's watch.
    """
    selector = compute_watch_selector(shard)
    if selector is None:
        return
    for plural in ("loops", "handoffintents"):
        settings.watching.label_selectors[GROUP, plural] = selector


def bound_kopf(settings: kopf.OperatorSettings, config: settings_mod.Settings) -> None:
    """Bound what kopf holds at once: how long an idle per-object worker lingers (each keeps its
    object's latest body), the page size of the initial listing (one LIST of every Loop
    otherwise) and, when set, how many workers run at once (0: no limit; a limit queues the
    waiting objects' events, bodies and all, without bound: see ``settings``)."""
    settings.queueing.worker_limit = config.kopf_worker_limit or None
    settings.queueing.idle_timeout = config.kopf_idle_seconds
    settings.watching.chunk_size = config.list_chunk_size


@kopf.on.startup()
def on_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure kopf and build the edges the handlers use; fails closed on bad settings."""
    quiet_url_logging()
    quiet_watch_feed_logging()
    config = settings_mod.fetch_settings()
    if not settings.peering.mandatory:
        if config.peering_name:
            settings.peering.name = config.peering_name
            settings.peering.mandatory = True
        else:
            settings.peering.standalone = True
    settings.posting.level = logging.WARNING
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
    configure_persistence(settings, config.shard)
    configure_watch_selectors(settings, config.shard)
    settings.execution.max_workers = max(settings.execution.max_workers or 0, 16)
    bound_kopf(settings, config)
    settings.watching.server_timeout = 300
    if os.environ.get("SUPERLOOP_LOG_FORMAT", "").strip().lower() == "json":
        # The chart passes --log-format=json; this is for runs started without it.
        kopf.configure(log_format=kopf.LogFormat.JSON)
    api_client = k8s_edge.build_api_client()
    metrics = metrics_mod.build_metrics()
    server = None
    if config.metrics_port:
        server = metrics_mod.start_metrics_server(metrics, config.metrics_port, config.metrics_host)
        log.info("metrics endpoint on %s:%d", config.metrics_host, server.port)
    ctx = OperatorContext(
        settings=config, edge=KubernetesFleetEdge(api_client), clock=SystemClock(), metrics=metrics
    )
    memo.operator = ctx
    memo.settings = config
    memo.edge = ctx.edge
    memo.clock = ctx.clock
    memo.metrics = metrics
    memo.metrics_server = server
    memo.api_client = api_client


@kopf.on.startup()
async def start_loop_scheduler(memo: kopf.Memo, **_: Any) -> None:
    """Start the one scheduler of periodic Loop passes (after ``on_startup`` built the context;
    on the event loop, where the Loop watch feeds it)."""
    ctx = fetch_context(memo)
    scheduler = PassScheduler(
        functools.partial(_loop_handlers.run_periodic_pass, ctx=ctx), workers=ctx.settings.loop_pass_workers
    )
    ctx.pass_pool = build_pass_pool(ctx.settings)
    if ctx.pass_pool is not None:  # started before the first (resume) passes need them
        await asyncio.to_thread(ctx.pass_pool.start)
    scheduler.start()
    ctx.scheduler = scheduler


def build_pass_pool(settings: settings_mod.Settings) -> LoopPassPool | None:
    """The pass pool ``SUPERLOOP_LOOP_PASS_PROCESSES`` asks for (None for 0: passes run in threads)."""
    if settings.loop_pass_processes < 1:
        return None
    return LoopPassPool(
        settings.loop_pass_processes,
        min_bytes=settings.loop_pass_process_min_bytes,
        timeout_seconds=settings.loop_pass_process_timeout_seconds,
    )


@kopf.on.cleanup()
async def stop_loop_scheduler(memo: kopf.Memo, **_: Any) -> None:
    """Stop the periodic passes before the clients close."""
    ctx = getattr(memo, "operator", None)
    if isinstance(ctx, OperatorContext) and ctx.scheduler is not None:
        await ctx.scheduler.stop()
    if isinstance(ctx, OperatorContext) and ctx.pass_pool is not None:
        ctx.pass_pool.close()


@kopf.on.cleanup()
def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop the metrics endpoint and close the API client."""
    server = getattr(memo, "metrics_server", None)
    if isinstance(server, metrics_mod.MetricsServer):
        server.stop()
    api_client = getattr(memo, "api_client", None)
    if api_client is not None:
        api_client.close()
