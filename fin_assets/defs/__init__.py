"""The sources of the deployment, one folder each with its ``defs.yaml`` (a
``fin_assets.lib.components.MarketDataSource``). Add a source: add a folder with a defs.yaml."""
