"""Drives a connectd worker with kafka-connect-py (PyPI), a Kafka Connect REST client
users already use: lists, reads status and tasks, pauses, resumes, restarts.
Usage: kafka_connect_py.py <url> <pipeline>. Prints `ok` at the end; any failure raises."""
import sys
import time

from kafka_connect import KafkaConnect

url, name = sys.argv[1], sys.argv[2]
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
plugins = {p["class"] for p in kc.list_connector_plugins()}
assert {"csv", "kafka", "window"} <= plugins, plugins
print("ok")
