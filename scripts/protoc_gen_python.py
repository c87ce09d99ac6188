"""A protoc plugin for buf that writes Python messages, .pyi stubs and gRPC stubs.

buf's remote plugins need the Buf Schema Registry and `protoc_builtin` needs a protoc
binary; grpcio-tools carries protoc's Python and gRPC generators as a library, so this
plugin hands buf's already-parsed descriptors to it and returns the files it wrote.
"""

import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc


def generate(request: plugin_pb2.CodeGeneratorRequest) -> plugin_pb2.CodeGeneratorResponse:
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    with tempfile.TemporaryDirectory() as tmp:
        descriptors = Path(tmp, "descriptors.binpb")
        out = Path(tmp, "out")
        out.mkdir()
        file_set = descriptor_pb2.FileDescriptorSet(file=request.proto_file)
        descriptors.write_bytes(file_set.SerializeToString())
        args = [
            "protoc",
            f"--descriptor_set_in={descriptors}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *request.file_to_generate,
        ]
        if protoc.main(args) != 0:
            response.error = "grpc_tools.protoc failed; see the messages above"
            return response
        for path in sorted(out.rglob("*")):
            if path.is_file():
                response.file.add(name=str(path.relative_to(out)), content=path.read_text())
    return response


def main() -> None:
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    sys.stdout.buffer.write(generate(request).SerializeToString())


if __name__ == "__main__":
    main()
