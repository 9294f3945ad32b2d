"""The code of ``deploy/local/engines.py``, one module per concern (standard library only).

``engines.py`` puts ``deploy/local`` on ``sys.path`` and runs ``localsuite.cli.main``.
Modules, from the bottom up:

- ``common``: ``EngineError`` (one line on stderr, exit status 1), logging, running commands;
- ``layout``: repository files, pinned versions, the cache layout under ``ZC_LOCAL_HOME``, ports;
- ``services``: the programs and setup commands of ``services.toml``, local secrets;
- ``prerequisites``: Java, Maven/Go/git for a fetch, supervisor next to the venv's python;
- ``fetch``: the Kafka jars (Maven) and the FerretDB build (Go) into the cache;
- ``probes``: readiness by real protocol requests (Kafka Metadata, OP_MSG ping, HTTP 200);
- ``ports``: free ports and who holds a busy one;
- ``supervisor``: the XML-RPC client of supervisord and launching it;
- ``configs``: supervisord.conf, server.properties, the KRaft storage format;
- ``lifecycle``: start, stop, status;
- ``cli``: the command line.
"""
