"""A Python client for the traffic-weight service, with numpy / pandas in and out.

    from serving.client import TrafficClient
    with TrafficClient("127.0.0.1:50051") as client:
        info = client.model_info()                      # feature order, heads, versions, surfaces
        result = client.rank(frame, surface="content")  # a DataFrame with item_id, creator_id, cluster_id,
        result.weights, result.ranking                  # original and the model's feature columns

Features are sent as one float32 blob in the order the server publishes (GetModelInfo.feature_names), so
a DataFrame's columns may come in any order. Errors arrive as grpc.RpcError; `describe_error` turns an
INVALID_ARGUMENT into its field-by-field list.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType

import grpc
import numpy as np
import pandas as pd
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from numpy.typing import ArrayLike

from serving.convert import RankResult, rank_request, to_result
from serving.generated.ecorank.v1 import traffic_pb2, traffic_pb2_grpc
from serving.server import DEFAULT_MAX_MESSAGE_BYTES

ID_COLUMNS = ("item_id", "creator_id", "cluster_id", "original")


def describe_error(err: grpc.RpcError) -> str:
    """The status and, for INVALID_ARGUMENT, every field violation on its own line."""
    lines = [f"{err.code().name}: {err.details()}"]
    status = rpc_status.from_call(err)
    for detail in status.details if status is not None else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            lines += [f"  {v.field}: {v.description}" for v in bad.field_violations]
    return "\n".join(lines)


class TrafficClient:
    def __init__(self, target: str, *, timeout: float = 10.0, token: str | None = None,
                 root_certificates: bytes | None = None, tls: bool = False,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        """`token`: sent as 'authorization: Bearer <token>'; `tls` (or `root_certificates`, PEM, for a private
        CA): a TLS channel instead of plaintext."""
        self.timeout = timeout
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        if tls or root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = traffic_pb2_grpc.TrafficRegulatorStub(self.channel)  # type: ignore[no-untyped-call]
        self._features: tuple[str, ...] | None = None

    def __enter__(self) -> TrafficClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def model_info(self) -> traffic_pb2.ModelInfo:
        info: traffic_pb2.ModelInfo = self.stub.GetModelInfo(traffic_pb2.GetModelInfoRequest(), timeout=self.timeout,
                                                             metadata=self.metadata)
        self._features = tuple(info.feature_names)
        return info

    def feature_names(self) -> tuple[str, ...]:
        if self._features is None:
            self.model_info()
        assert self._features is not None
        return self._features

    def rank(self, candidates: pd.DataFrame | None = None, *, item_ids: ArrayLike | None = None,
             creator_ids: ArrayLike | None = None, cluster_ids: ArrayLike | None = None,
             original: ArrayLike | None = None, features: ArrayLike | None = None, surface: str = "content",
             overrides: Mapping[str, float] | None = None, explain: bool = False, request_id: str = "",
             market: str = "") -> RankResult:
        """Rank one request: either a DataFrame (ID_COLUMNS + the feature columns) or the arrays."""
        if candidates is not None:
            missing = [c for c in (*ID_COLUMNS, *self.feature_names()) if c not in candidates.columns]
            if missing:
                raise ValueError(f"candidates: missing columns {missing}; expected {list(ID_COLUMNS)} and the "
                                 f"model's features {list(self.feature_names())}")
            item_ids, creator_ids = candidates["item_id"], candidates["creator_id"]
            cluster_ids, original = candidates["cluster_id"], candidates["original"]
            features = candidates[list(self.feature_names())].to_numpy(np.float32)
        if item_ids is None or creator_ids is None or features is None:
            raise ValueError("rank: pass a candidates DataFrame, or item_ids, creator_ids and features")
        request = rank_request(item_ids, creator_ids, features, cluster_ids=cluster_ids, original=original,
                               surface=surface, overrides=overrides, explain=explain, request_id=request_id,
                               market=market)
        response: traffic_pb2.RankResponse = self.stub.Rank(request, timeout=self.timeout, metadata=self.metadata)
        return to_result(response)

    def reload(self, *, bundle_path: str = "", plan_path: str = "") -> traffic_pb2.ReloadResponse:
        answer: traffic_pb2.ReloadResponse = self.stub.Reload(
            traffic_pb2.ReloadRequest(bundle_path=bundle_path, plan_path=plan_path), timeout=max(self.timeout, 120),
            metadata=self.metadata)
        return answer
