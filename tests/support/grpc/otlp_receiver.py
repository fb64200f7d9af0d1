"""An OTLP/gRPC receiver for dewy's tests, built on the official protobuf definitions
(PyPI opentelemetry-proto) and grpcio.

Usage: otlp_receiver.py RECORD_DIR [CERT KEY]
Prints the port it listens on (127.0.0.1) on the first line of stdout. Each Export request is
appended as JSON (protobuf JSON mapping, field names as in the .proto) to
RECORD_DIR/{metrics,traces,logs}.jsonl.
"""

import json
import os
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

DIR = sys.argv[1]
LOCK = threading.Lock()


def record(kind, request):
    entry = json_format.MessageToDict(request, preserving_proto_field_name=True)
    with LOCK, open(os.path.join(DIR, kind + ".jsonl"), "a") as f:
        f.write(json.dumps(entry) + "\n")


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def Export(self, request, context):
        record("metrics", request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        record("traces", request)
        return trace_service_pb2.ExportTraceServiceResponse()


class Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def Export(self, request, context):
        record("logs", request)
        return logs_service_pb2.ExportLogsServiceResponse()


def main():
    os.makedirs(DIR, exist_ok=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
    if len(sys.argv) > 3:
        with open(sys.argv[2], "rb") as c, open(sys.argv[3], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
