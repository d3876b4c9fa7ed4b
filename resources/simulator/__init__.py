"""The project's own market-data provider: its client adapter and a simulator serving it.

- ``adapter``: how the client asks the simulator for bars and reads its pages (product code,
  loaded with the Dagster definitions, so this package imports nothing on its own);
- ``data``: deterministic 1-minute bars, a pure function of symbol, minute and seed, on a
  price walk continuous across days; a symbol on an exchange calendar trades only in its
  sessions;
- ``protocol``: the wire format (query parameters, page cursors, JSON bodies);
- ``quota``: the per-key quota the simulator enforces, as a vendor would;
- ``faults``: the failures it can inject (429, 5xx, truncated or malformed bodies, ...);
- ``server``: ``MarketSimulator``, its HTTP handler and its ``/_sim`` admin API;
- ``cli``: ``fin-assets simulator``;
- ``loopback``: the loopback HTTP server the simulator and the tests' emulators share.
"""
