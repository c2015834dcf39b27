"""wasmail example filter in Python: the same filter as the Rust test guest
plugins/guests/test/header-reject, built into a WebAssembly component with componentize-py.

- data hook: reject (550 5.7.1) a message any of whose Subject fields contains the configured
  `word` (default "VIAGRA"); otherwise continue and add `X-Wasmail-Checked: yes`.
- helo hook: defer (451 4.7.1) a client that greets as "defer.me"; continue otherwise.

componentize-py calls the class named after each exported interface (`DataHook`, `HeloHook`);
`wit_world` is the binding package it generates from wit/world.wit at build time.
"""

from wit_world import exports
from wit_world.imports import config
from wit_world.imports.message import Message
from wit_world.imports.types import (
    Client,
    Decision,
    Envelope,
    Header,
    Modification_AddHeader,
    Reply,
    Verdict_Continue,
    Verdict_Defer,
    Verdict_Reject,
)


def get_or(key: str, default: str) -> str:
    """The config value at `key`, or `default` if absent."""
    value = config.get(key)
    return default if value is None else value


class DataHook(exports.DataHook):
    def on_data(self, envelope: Envelope, message: Message) -> Decision:
        word = get_or("word", "VIAGRA")
        if any(word in subject for subject in message.header("Subject")):
            return Decision(Verdict_Reject(Reply(550, "5.7.1", "message refused by policy")), [])
        return Decision(
            Verdict_Continue(),
            [Modification_AddHeader(Header("X-Wasmail-Checked", "yes"))],
        )


class HeloHook(exports.HeloHook):
    def on_helo(self, client: Client, helo: str) -> Decision:
        if helo == "defer.me":
            return Decision(Verdict_Defer(Reply(451, "4.7.1", "greeting deferred")), [])
        return Decision(Verdict_Continue(), [])
