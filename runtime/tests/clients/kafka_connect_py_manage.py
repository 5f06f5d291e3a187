"""Creates, changes and deletes pipelines over the admin API with kafka-connect-py.
Usage: kafka_connect_py_manage.py <url>. Leaves pipeline `kept` running. Prints `ok`."""
import sys
import time

import requests
from kafka_connect import KafkaConnect

url = sys.argv[1]
kc = KafkaConnect(url=url)


def pipeline(path, columns):
    return {
        "sources": {"gen": {"type": "trades", "seed": 3, "rate": 100, "count": 1000000}},
        "sinks": {"out": {"type": "csv", "inputs": ["gen"], "path": path, "columns": columns}},
    }


def wait(cond, what):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if cond():
                return
        except requests.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def running(name):
    return kc.get_connector_status(name)["connector"]["state"] == "RUNNING"


made = kc.create_connector({"name": "made", "config": pipeline("out/made.csv", ["id"])})
assert made["name"] == "made" and made["config"]["file"].endswith("made.yaml"), made
wait(lambda: running("made"), "made to run")

# Invalid: every problem comes back with its field, and nothing is written.
try:
    kc.create_connector({"name": "bad", "config": {"sources": {"gen": {"type": "trades", "rate": "fast"}}, "sinks": {"out": {"type": "csv", "inputs": ["nope"]}}}})
    raise AssertionError("an invalid pipeline was accepted")
except requests.HTTPError as e:
    body = e.response.json()
    assert e.response.status_code == 400, body
    fields = {err["field"] for err in body["errors"]}
    assert len(body["errors"]) >= 3 and any("rate" in f for f in fields), body
assert "bad" not in kc.list_connectors()

# A change restarts it with the new configuration (the columns).
kc.update_connector("made", pipeline("out/made.csv", ["id", "ticker"]))
wait(lambda: running("made") and kc.get_connector("made")["components"], "made to run again")

kc.create_connector({"name": "kept", "config": pipeline("out/kept.csv", ["id"])})
wait(lambda: running("kept"), "kept to run")

kc.delete_connector("made")
wait(lambda: "made" not in kc.list_connectors(), "made to go")
print("ok")
