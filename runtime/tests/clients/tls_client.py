"""Checks the admin API over HTTPS with kafka-connect-py: the certificate verifies
against the given CA file and the pipeline is listed; without the CA, verification
fails. Usage: tls_client.py <https url> <ca file> <pipeline>. Prints `ok`."""
import sys

import requests
from kafka_connect import KafkaConnect

url, ca, name = sys.argv[1], sys.argv[2], sys.argv[3]
assert name in KafkaConnect(url=url, ssl_verify=ca).list_connectors()
try:
    KafkaConnect(url=url).list_connectors()
    raise AssertionError("a certificate no CA vouches for was accepted")
except requests.exceptions.SSLError:
    pass
print("ok")
