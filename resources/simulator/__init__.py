"""The project's own market-data provider: its client adapter and a simulator serving it.

- ``adapter``: how the client asks the simulator for bars and reads its pages (product code,
  loaded with the Dagster definitions, so this package imports nothing on its own);
- ``walk``: the price walk, a deterministic 1-minute bar for any symbol, minute and seed,
  continuous across days;
- ``sessions``: exchange calendars' sessions, in epoch minutes and days;
- ``actions``: the corporate actions of the equities (splits and cash dividends, a pure
  function of symbol, seed and calendar, plus any announced later), the share basis they put
  bars on, and Massive's ``/stocks/v1/splits`` and ``/stocks/v1/dividends`` answers;
- ``data``: the bars served: the walk's, and for a symbol on an exchange calendar only in its
  sessions and unadjusted for its splits (or split-adjusted as of a moment);
- ``protocol``: the wire format (query parameters, page cursors, JSON bodies);
- ``quota``: the per-key quota the simulator enforces, as a vendor would;
- ``faults``: the failures it can inject (429, 5xx, truncated or malformed bodies, ...);
- ``server``: ``MarketSimulator``, its HTTP handler and its ``/_sim`` admin API;
- ``cli``: ``fin-assets simulator``;
- ``loopback``: the loopback HTTP server the simulator and the tests' emulators share.
"""
