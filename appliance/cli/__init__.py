"""The ``hexvault`` command: init, serve, and administration of organizations, users and keys.

Every command reads the config from ``--config``, ``HEXVAULT_CONFIG`` or the nearest
``hexvault.toml`` (appliance.config.find_config_file), plus ``HEXVAULT_*`` variables. Failures
print one ``error:`` line and exit 1.

One module per command group; ``group.py`` holds the ``hexvault`` group itself, ``fail`` and the
``command`` decorator (opens the runtime and the database, turns HexvaultError into one line).
To add a command group, write ``appliance/cli/NAME.py`` with ``@command(main, ...)`` or
``@main.group()`` and import it below; its tests go in ``tests/test_cli.py`` or the test file of
the module it drives.
"""

from appliance.cli.group import main
# Imported for their side effect: each registers its commands on `main`.
from appliance.cli import audit  # noqa: F401,E402
from appliance.cli import backup  # noqa: F401,E402
from appliance.cli import db  # noqa: F401,E402
from appliance.cli import front  # noqa: F401,E402
from appliance.cli import gc  # noqa: F401,E402
from appliance.cli import health  # noqa: F401,E402
from appliance.cli import keys  # noqa: F401,E402
from appliance.cli import ldap  # noqa: F401,E402
from appliance.cli import orgs  # noqa: F401,E402
from appliance.cli import registry  # noqa: F401,E402
from appliance.cli import server  # noqa: F401,E402
from appliance.cli import users  # noqa: F401,E402

__all__ = ["main"]
