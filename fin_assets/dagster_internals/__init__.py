"""The one seam into Dagster's internals: the only package that imports ``dagster._*`` or a
Dagster library's internal modules (``tests/unit/test_module_structure.py`` enforces it).

Every private name used here has a contract test (``tests/unit/test_dagster_contracts.py``)
stating what this code relies on, so that a Dagster upgrade that moves or changes one fails
there, naming it, instead of at run time.
"""
