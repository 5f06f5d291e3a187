"""Drives a connectd worker with kafka-connect-py (PyPI), a Kafka Connect REST client
users already use: lists, reads status and tasks, pauses, resumes, restarts, stops and
resets offsets (KIP-875; kafka-connect-py has no offsets call, so those two requests go
through `requests`, which it is built on), and validates configurations.
Usage: kafka_connect_py.py <url> <pipeline> <its csv file>. Prints `ok` at the end; any
failure raises."""
import sys
import time

import requests
from kafka_connect import KafkaConnect

url, name, csv = sys.argv[1], sys.argv[2], sys.argv[3]
kc = KafkaConnect(url=url)


def wait_for(state):
    deadline = time.time() + 30
    while time.time() < deadline:
        status = kc.get_connector_status(name)
        if status["connector"]["state"] == state and status["tasks"][0]["state"] == state:
            return status
        time.sleep(0.1)
    raise AssertionError(f"{name} did not reach {state}: {kc.get_connector_status(name)}")


info = kc.get_cluster_info()
assert info["version"], info
assert name in kc.list_connectors(), kc.list_connectors()
by_status = kc.list_connectors(expand="status")
assert by_status[name]["status"]["connector"]["state"] == "RUNNING", by_status
by_info = kc.list_connectors(expand="info")
assert by_info[name]["info"]["tasks"] == [{"connector": name, "task": 0}], by_info
assert kc.get_connector(name)["name"] == name
status = wait_for("RUNNING")
assert status["type"] == "source" and status["tasks"][0]["id"] == 0, status
assert status["connector"]["worker_id"] == url.split("://")[1], status
assert kc.list_connector_tasks(name)[0]["id"] == {"connector": name, "task": 0}
assert kc.get_connector_task_status(name, 0)["state"] == "RUNNING"
kc.pause_connector(name)
wait_for("PAUSED")
kc.resume_connector(name)
wait_for("RUNNING")
kc.restart_connector(name)
wait_for("RUNNING")
restarted = kc.restart_connector(name, include_tasks=True)
assert restarted["name"] == name, restarted
wait_for("RUNNING")

# Stop, read the offsets, reset them, resume: it starts over from the beginning.
kc.stop_connector(name)
stopped = wait_for("STOPPED")
offsets = requests.get(f"{url}/connectors/{name}/offsets")
offsets.raise_for_status()
entries = offsets.json()["offsets"]
assert [e["partition"] for e in entries] == [{"source": "gen"}], entries
assert isinstance(entries[0]["offset"], dict) and entries[0]["offset"], entries


def ids():
    with open(csv) as f:
        return [line.strip() for line in f.readlines()[1:] if line.strip()]


first, before = ids()[0], len(ids())
assert ids().count(first) == 1, "an id twice before the reset"
reset = requests.delete(f"{url}/connectors/{name}/offsets")
assert reset.status_code == 200 and "reset" in reset.json()["message"], reset.text
after = requests.get(f"{url}/connectors/{name}/offsets").json()
assert after["offsets"] == [], after
kc.resume_connector(name)
wait_for("RUNNING")
deadline = time.time() + 30
while ids().count(first) < 2:
    assert time.time() < deadline, f"no rerun from the beginning: {len(ids())} rows, {before} before"
    time.sleep(0.1)

plugins = {p["class"] for p in kc.list_connector_plugins()}
assert {"csv", "kafka", "window"} <= plugins, plugins

# Validation as Kafka Connect answers it (ConfigInfos), with the common keys such tools
# send: each option's value and its errors, the errors counted.
common = {"connector.class": "csv", "tasks.max": "1", "name": "out"}
checked = kc.validate_connector_config(
    "csv", {**common, "inputs": ["gen"], "path": "o.csv", "columns": ["id", "px"], "delimiter": ";;"})
assert checked["name"] == "csv" and checked["error_count"] == 1, checked
values = {c["definition"]["name"]: c["value"] for c in checked["configs"]}
assert values["delimiter"]["errors"] and "single ASCII character" in values["delimiter"]["errors"][0], checked
assert values["path"] == {"name": "path", "value": "o.csv", "recommended_values": [], "errors": [], "visible": True}, checked
assert values["columns"]["value"] == "id,px", checked
# A block's settings are options of their own, as Kafka Connect's dotted names.
source = kc.validate_connector_config(
    "file", {"connector.class": "file", "path": "in.csv", "format": "csv", "csv": {"delimiter": ";;"}})
values = {c["definition"]["name"]: c["value"] for c in source["configs"]}
assert source["error_count"] == 1 and values["csv.delimiter"]["value"] == ";;", source
assert "single ASCII character" in values["csv.delimiter"]["errors"][0] and values["csv"]["errors"] == [], source
fine = kc.validate_connector_config("csv", {**common, "inputs": ["gen"], "path": "o.csv", "columns": ["id"]})
assert fine["error_count"] == 0 and fine["errors"] == [], fine
wrong = kc.validate_connector_config("csv", {"connector.class": "jsonl", "tasks.max": 4, "path": "o.csv", "columns": ["id"]})
values = {c["definition"]["name"]: c["value"] for c in wrong["configs"]}
assert wrong["error_count"] == 2, wrong
assert "validates `csv`" in values["connector.class"]["errors"][0], wrong
assert "one task" in values["tasks.max"]["errors"][0], wrong
print("ok")
