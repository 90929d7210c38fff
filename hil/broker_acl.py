"""A mosquitto that refuses subscriptions: the command channel's refusal
without a cluster (tests/test_command_channel.py).

mosquitto's ``acl_file`` never refuses a SUBSCRIBE (it only withholds the
messages: eclipse-mosquitto/mosquitto#2042), so the refusal is made by the
dynamic security plugin Debian's mosquitto 2.0 ships, whose
``subscribePattern`` ACL answers a denied SUBSCRIBE with the SUBACK failure
code 0x80 — what a broker refusing the platform's command topic sends.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Where Debian's mosquitto package installs the plugin.
DYNSEC_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


def refusing(work: Path, *patterns: str) -> str:
    """mosquitto.conf lines (for ``hil.stack.Mosquitto(extra=…)``) that let
    anonymous clients do anything except subscribe to ``patterns``."""
    if not DYNSEC_PLUGIN.exists():
        raise RuntimeError(f"{DYNSEC_PLUGIN} missing: Debian's mosquitto package ships it")
    work.mkdir(parents=True, exist_ok=True)
    acls = [
        {"acltype": "subscribePattern", "topic": p, "priority": 0, "allow": False} for p in patterns
    ]
    config = {
        "defaultACLAccess": {
            "publishClientSend": True,
            "publishClientReceive": True,
            "subscribe": True,
            "unsubscribe": True,
        },
        "clients": [],
        "groups": [{"groupname": "anonymous", "roles": [{"rolename": "refused"}], "clients": []}],
        "anonymousGroup": "anonymous",
        "roles": [{"rolename": "refused", "acls": acls}],
    }
    path = work / "dynsec.json"
    path.write_text(json.dumps(config, indent=1))
    return f"plugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {path}\n"
