"""A dewy.RegistryService server for dewy's tests, generated from dewy.proto with protoc.

Usage: registry_server.py ANSWER_JSON RECORD_JSONL [CERT KEY]
Prints the port it listens on (127.0.0.1) on the first line of stdout. Every call re-reads
ANSWER_JSON: {"id", "tag", "artifact_url", "created_at" (unix seconds, optional)} or
{"error": "NOT_FOUND", "message": "..."}. Each request is appended to RECORD_JSONL as
{"method", ...fields, "has_arifact_name"}.
"""

import json
import os
import sys
import tempfile
from concurrent import futures

import grpc
from grpc_tools import protoc

try:
    from importlib.resources import files
    INCLUDE = str(files("grpc_tools") / "_proto")
except Exception:  # pragma: no cover
    import pkg_resources
    INCLUDE = pkg_resources.resource_filename("grpc_tools", "_proto")

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = tempfile.mkdtemp(prefix="dewy-grpc-")
rc = protoc.main(["protoc", "-I" + HERE, "-I" + INCLUDE, "--python_out=" + OUT,
                  "--grpc_python_out=" + OUT, os.path.join(HERE, "dewy.proto")])
if rc != 0:
    sys.exit("protoc failed: %d" % rc)
sys.path.insert(0, OUT)
import dewy_pb2  # noqa: E402
import dewy_pb2_grpc  # noqa: E402
from google.protobuf import empty_pb2  # noqa: E402

ANSWER, RECORD = sys.argv[1], sys.argv[2]


def record(entry):
    with open(RECORD, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Registry(dewy_pb2_grpc.RegistryServiceServicer):
    def Current(self, request, context):
        record({"method": "Current", "arch": request.arch, "os": request.os,
                "has_arifact_name": request.HasField("arifact_name"),
                "arifact_name": request.arifact_name})
        with open(ANSWER) as f:
            answer = json.load(f)
        if "error" in answer:
            context.abort(getattr(grpc.StatusCode, answer["error"]), answer.get("message", ""))
        res = dewy_pb2.CurrentResponse(id=answer["id"], tag=answer["tag"],
                                       artifact_url=answer["artifact_url"])
        if "created_at" in answer:
            res.created_at.seconds = int(answer["created_at"])
        return res

    def Report(self, request, context):
        record({"method": "Report", "id": request.id, "tag": request.tag,
                "command": request.command, "has_err": request.HasField("err"),
                "err": request.err})
        return empty_pb2.Empty()


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    dewy_pb2_grpc.add_RegistryServiceServicer_to_server(Registry(), server)
    if len(sys.argv) > 4:
        with open(sys.argv[3], "rb") as c, open(sys.argv[4], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
