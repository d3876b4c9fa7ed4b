"""Alerts that reach a human: payloads and webhook delivery, free of Dagster.

Dagster's open-source edition evaluates freshness and checks but delivers no alerts; the alert
sensor (fin_assets/lib/alerts.py) decides *what* to say, this module says it: Slack-compatible JSON
by default (``{"text": ...}`` works for Slack, Mattermost, Rocket.Chat, Teams workflows), or a
plain JSON object for anything else. Delivery retries with backoff and never raises: an alert
that could not be sent is returned to the caller to try again on the next tick.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

# httpx is imported where a webhook is posted, not here: the alert sensor imports this module
# whenever Dagster loads the definitions (every run worker and code server), and most of those
# processes never send an alert (benchmarks/startup.py).
if TYPE_CHECKING:
    import httpx
from resources.logfields import log_fields
from resources.notify.alert import Alert, PayloadFormat
from resources.secrets import redact, redact_value, register

logger = logging.getLogger("fin_assets.lib.alerts")


class WebhookNotifier:
    """POSTs alerts to one webhook; logs every alert whether or not a webhook is configured."""

    def __init__(
        self,
        url: str | None,
        *,
        fmt: PayloadFormat = "slack",
        attempts: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url or None
        register(self.url)  # anyone holding a webhook URL can post to it
        self.fmt = fmt
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._timeout_s = timeout_s
        self._transport = transport
        # Built by the first send, not here: the alert sensor makes a notifier every tick and
        # most ticks have nothing to say (an httpx client costs ~60 ms of TLS set-up).
        self._http: httpx.Client | None = None
        logging.getLogger("httpx").setLevel(logging.WARNING)  # webhook URLs hold tokens

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def send(self, alert: Alert) -> bool:
        """Deliver one alert; True when delivered (or when there is nowhere to deliver)."""
        # Alerts quote error messages; whatever wrote them, no secret of this process goes out.
        logger.warning("ALERT %s: %s", alert.kind, redact(alert.text()).replace("\n", " | "))
        if self.url is None:
            return True
        import httpx

        if self._http is None:
            self._http = httpx.Client(timeout=self._timeout_s, transport=self._transport)
        for attempt in range(1, self.attempts + 1):
            try:
                response = self._http.post(self.url, json=redact_value(alert.payload(self.fmt)))
                if response.status_code < 300:
                    return True
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            if attempt < self.attempts:
                wait = random.uniform(0, self.backoff_s * 2 ** (attempt - 1))
                logger.warning(
                    "webhook delivery failed (%s), attempt %d of %d; retrying in %.2f s%s",
                    problem,
                    attempt,
                    self.attempts,
                    wait,
                    log_fields(reason="webhook", problem=problem, attempt=attempt, wait_s=wait),
                )
                self._sleep(wait)
        logger.error(
            "webhook delivery failed (%s); the alert is kept for the next tick%s",
            problem,
            log_fields(reason="webhook", problem=problem, alert=alert.key),
        )
        return False
