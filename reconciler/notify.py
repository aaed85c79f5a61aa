"""Notifications (`--notify URL`): one JSON event per action outcome and per drift, block,
conflict or failure, delivered in the background.

A receiver that hangs or fails never delays or fails a reconcile: `send` only puts the
event in each receiver's bounded queue (when one is full the event is dropped for it, and
counted); a thread per receiver delivers, each request with a timeout, each event with a
bounded number of attempts and backoff, so a hanging receiver delays no other. `close`
waits at most `wait` seconds (a one-shot apply: about one), then drops what is left.
Failures go to `on_failure` (the daemon counts them in /metrics).

No secret leaves: events carry names, ids and reasons, where secrets are references
already; and the value of every secret the manifests reference is masked before sending
anyway, since an API error message may echo one back.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from reconciler import secrets
from reconciler.client.webhook import (
    WebhookSender,
    is_slack_webhook,
    resolve_webhook_url,
    url_origin,
)
from reconciler.errors import ReconcilerError
from reconciler.model import Action, Deployment, Outcome, Plan, Result, Revision, SecretRef

ENV = "RECONCILER_NOTIFY"
EVENTS = (
    "created", "replaced", "restarted", "pruned", "adopted", "released",
    "drift", "blocked", "conflict", "failed", "deferred",
)  # fmt: skip
# An outcome's result -> its event; results that are not news (in sync, pending, untouched)
# send nothing.  `unknown` (outcome not known yet) and `skipped` (shutting down) fail apply.
_EVENT_OF_RESULT = {
    **{Result(event): event for event in EVENTS},
    Result.UNKNOWN: "failed",
    Result.SKIPPED: "failed",
}
_SLACK_ICONS = {
    "created": ":white_check_mark:", "replaced": ":arrows_counterclockwise:",
    "restarted": ":repeat:", "pruned": ":wastebasket:", "adopted": ":inbox_tray:",
    "released": ":outbox_tray:", "drift": ":warning:", "blocked": ":no_entry:",
    "conflict": ":exclamation:", "failed": ":x:", "deferred": ":hourglass:",
}  # fmt: skip

Event = dict[str, Any]
FailureCallback = Callable[[str, str], None]  # (reason: error | dropped, message)


def targets(flags: Sequence[str] | None, environ: Mapping[str, str] | None = None) -> list[str]:
    """The receivers: every `--notify URL`, else RECONCILER_NOTIFY (spaces or commas)."""
    env = os.environ if environ is None else environ
    given = list(flags) if flags else re.split(r"[\s,]+", env.get(ENV, ""))
    urls = [resolve_webhook_url(url) for url in given if url.strip()]
    return list(dict.fromkeys(urls))


def _now() -> str:
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def make_event(
    event: str, name: str | None, project_id: int, deploy_id: str | None, reason: str
) -> Event:
    return {
        "event": event,
        "name": name,
        "projectId": project_id,
        "deployId": deploy_id or None,
        "reason": reason,
        "time": _now(),
        "revision": None,  # the commit of the run: filled in by the Notifier that sends it
    }


def outcome_event(outcome: Outcome, action: Action | None = None) -> Event | None:
    """The event for what became of one action, or None when it is not news.  The reason
    is the outcome's detail, else the planned action's reason (why it was created...)."""
    event = _EVENT_OF_RESULT.get(outcome.result)
    if event is None:
        return None
    reason = outcome.detail or (action.reason if action is not None else "")
    if outcome.result in (Result.UNKNOWN, Result.SKIPPED):
        reason = f"{outcome.action} {outcome.result}: {reason}" if reason else outcome.result
    return make_event(event, outcome.name, outcome.project_id, outcome.deploy_id, reason)


def action_event(event: str, action: Action) -> Event:
    """The event for a planned action reported without being carried out (drift, blocked,
    conflict in the daemon)."""
    return make_event(event, action.name, action.project_id, action.deploy_id, action.reason)


def slack_message(event: Mapping[str, Any]) -> dict[str, str]:
    """Slack's incoming-webhook format; `&`, `<`, `>` escaped as Slack asks (so a reason
    cannot inject a mention or a link)."""

    def escaped(value: object) -> str:
        return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    kind = str(event["event"])
    subject = escaped(event.get("name") or "(no manifest)")
    text = f"{_SLACK_ICONS.get(kind, '')} *{kind}* {subject} (project {event['projectId']})"
    if event.get("deployId"):
        text += f" `{escaped(event['deployId'])}`"
    if event.get("reason"):
        text += f": {escaped(event['reason'])}"
    if event.get("revision"):
        text += f" (at `{escaped(str(event['revision'])[:12])}`)"
    return {"text": text.strip()}


_STOP = object()


class Notifier:
    """Background delivery of events to every receiver; a no-op without receivers.

    Each receiver has its own bounded queue and thread, so one that hangs delays no other.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        on_failure: FailureCallback | None = None,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
        queue_size: int = 256,
    ) -> None:
        self.urls = list(urls)
        self._on_failure = on_failure
        self._timeout = timeout
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._abandon = threading.Event()
        self._lock = threading.Lock()
        self._refs: frozenset[SecretRef] = frozenset()
        self._revision: str | None = None
        self.sent = 0  # deliveries (one event to one receiver) that succeeded
        self.failed = 0  # ... that failed every attempt, or were dropped
        self._pending = 0  # ... queued or in flight
        self.last_error = ""
        self._channels: list[tuple[str, queue.Queue[object], threading.Thread]] = []
        for url in self.urls:
            line: queue.Queue[object] = queue.Queue(maxsize=queue_size)
            thread = threading.Thread(
                target=self._run, args=(url, line), name=f"notify {url_origin(url)}", daemon=True
            )
            self._channels.append((url, line, thread))
            thread.start()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def at_revision(self, revision: Revision | None) -> None:
        """Events sent from now on carry this commit (`revision`: its SHA, or null)."""
        self._revision = revision.sha if revision is not None else None

    def watch_secrets(self, desired: Iterable[Deployment]) -> None:
        """Mask the values of the secrets these manifests reference (read at send time)."""
        if self.urls:
            self._refs = secrets.referenced(desired)

    # -- the caller's side: never blocks -----------------------------------------------

    def send(self, event: Event | None) -> None:
        if event is None or self._abandon.is_set():
            return
        if event.get("revision") is None:
            event = {**event, "revision": self._revision}
        for url, line, _ in self._channels:
            try:
                line.put_nowait(event)
            except queue.Full:
                self._failure("dropped", f"{url_origin(url)}: queue full, event dropped", 0)
                continue
            with self._lock:
                self._pending += 1

    def send_outcomes(self, outcomes: Iterable[Outcome], plan: Plan | None = None) -> None:
        planned = {a.name: a for a in plan.actions if a.name} if plan is not None else {}
        for outcome in outcomes:
            self.send(outcome_event(outcome, planned.get(outcome.name or "")))

    def close(self, wait: float = 1.0) -> int:
        """Deliver what is queued for at most `wait` seconds in all, then drop the rest.
        Returns how many deliveries did not succeed (failed, dropped or cut short)."""
        channels, self._channels = self._channels, []
        if not channels:
            return 0
        for _, line, _ in channels:
            with contextlib.suppress(queue.Full):  # that receiver is behind: abandoned below
                line.put_nowait(_STOP)
        deadline = time.monotonic() + max(0.0, wait)
        for _, _, thread in channels:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._abandon.set()  # no new attempt, no more backoff sleeping
        for url, line, thread in channels:
            dropped = 0
            while True:
                try:
                    item = line.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    dropped += 1
            if dropped:
                self._failure("dropped", f"{url_origin(url)}: not delivered before exit", dropped)
            if thread.is_alive():
                line.put_nowait(_STOP)  # once its request in flight ends, the thread ends
        with self._lock:
            return self.failed + self._pending

    # -- the workers -------------------------------------------------------------------

    def _failure(self, reason: str, message: str, pending: int = 1) -> None:
        """`pending`: how many of these deliveries had been queued (0: refused at once)."""
        count = max(1, pending)
        with self._lock:
            self.failed += count
            self._pending -= pending
            self.last_error = message
        if self._on_failure is not None:
            for _ in range(count):
                self._on_failure(reason, message)

    def _run(self, url: str, line: queue.Queue[object]) -> None:
        with WebhookSender(timeout=self._timeout) as sender:
            while True:
                item = line.get()
                if item is _STOP:
                    return
                assert isinstance(item, dict)
                self._deliver(sender, url, item)

    def _deliver(self, sender: WebhookSender, url: str, event: Event) -> None:
        values = secrets.known_values(self._refs)  # read now: a rotated value is masked too
        masked = {k: secrets.mask(v, values) if isinstance(v, str) else v for k, v in event.items()}
        body = slack_message(masked) if is_slack_webhook(url) else masked
        error = ""
        for attempt in range(self._attempts):
            if self._abandon.is_set():
                error = "not delivered before exit"
                break
            try:
                sender.post_json(url, body)
            except ReconcilerError as failure:
                error = str(failure)
                if attempt + 1 < self._attempts:
                    self._abandon.wait(self._backoff * 2**attempt)
                continue
            with self._lock:
                self.sent += 1
                self._pending -= 1
            return
        reason = "dropped" if self._abandon.is_set() else "error"
        self._failure(reason, f"notification {event['event']} failed: {error}")
