// wasmail example filter in JavaScript: the same filter as the Rust test guest
// plugins/guests/test/header-reject, built into a WebAssembly component with ComponentizeJS
// (SpiderMonkey, from the jco project; see build.sh).
//
// - data hook: reject (550 5.7.1) a message any of whose Subject fields contains the configured
//   `word` (default "VIAGRA"); otherwise continue and add `X-Wasmail-Checked: yes`.
// - helo hook: defer (451 4.7.1) a client that greets as "defer.me"; continue otherwise.
//
// Each exported interface is an exported object named after it in camelCase, with its functions
// as camelCase methods. Each imported interface is an ES module named by its full WIT name. WIT
// records are objects with camelCase keys, variants `{ tag, val }` with the case name as written
// in WIT, `option<T>` the value or `null`, a borrowed resource an object with the methods.

import * as config from "wasmail:plugin/config@0.1.0";

/** The config value at `key`, or `fallback` if absent. */
function getOr(key, fallback) {
  const value = config.get(key);
  return value == null ? fallback : value;
}

function decision(verdict, modifications = []) {
  return { verdict, modifications };
}

function reply(code, enhanced, text) {
  return { code, enhanced, text };
}

export const dataHook = {
  onData(_envelope, message) {
    const word = getOr("word", "VIAGRA");
    if (message.header("Subject").some((subject) => subject.includes(word))) {
      return decision({ tag: "reject", val: reply(550, "5.7.1", "message refused by policy") });
    }
    return decision({ tag: "continue" }, [
      { tag: "add-header", val: { name: "X-Wasmail-Checked", value: "yes" } },
    ]);
  },
};

export const heloHook = {
  onHelo(_client, helo) {
    if (helo === "defer.me") {
      return decision({ tag: "defer", val: reply(451, "4.7.1", "greeting deferred") });
    }
    return decision({ tag: "continue" });
  },
};
