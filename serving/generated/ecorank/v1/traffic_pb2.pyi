from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DenseMatrix(_message.Message):
    __slots__ = ("rows", "cols", "data")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    data: bytes
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class CandidateBatch(_message.Message):
    __slots__ = ("item_ids", "creator_ids", "cluster_ids", "original", "features")
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    CREATOR_IDS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_IDS_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    item_ids: _containers.RepeatedScalarFieldContainer[int]
    creator_ids: _containers.RepeatedScalarFieldContainer[int]
    cluster_ids: _containers.RepeatedScalarFieldContainer[int]
    original: _containers.RepeatedScalarFieldContainer[bool]
    features: DenseMatrix
    def __init__(self, item_ids: _Optional[_Iterable[int]] = ..., creator_ids: _Optional[_Iterable[int]] = ..., cluster_ids: _Optional[_Iterable[int]] = ..., original: _Optional[_Iterable[bool]] = ..., features: _Optional[_Union[DenseMatrix, _Mapping]] = ...) -> None: ...

class RankRequest(_message.Message):
    __slots__ = ("request_id", "surface", "market", "candidates", "blend_overrides", "explain")
    class BlendOverridesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    MARKET_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    BLEND_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    surface: str
    market: str
    candidates: CandidateBatch
    blend_overrides: _containers.ScalarMap[str, float]
    explain: bool
    def __init__(self, request_id: _Optional[str] = ..., surface: _Optional[str] = ..., market: _Optional[str] = ..., candidates: _Optional[_Union[CandidateBatch, _Mapping]] = ..., blend_overrides: _Optional[_Mapping[str, float]] = ..., explain: _Optional[bool] = ...) -> None: ...

class HeadPredictions(_message.Message):
    __slots__ = ("gmv", "prosperity", "risk", "complaint")
    GMV_FIELD_NUMBER: _ClassVar[int]
    PROSPERITY_FIELD_NUMBER: _ClassVar[int]
    RISK_FIELD_NUMBER: _ClassVar[int]
    COMPLAINT_FIELD_NUMBER: _ClassVar[int]
    gmv: _containers.RepeatedScalarFieldContainer[float]
    prosperity: _containers.RepeatedScalarFieldContainer[float]
    risk: _containers.RepeatedScalarFieldContainer[float]
    complaint: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, gmv: _Optional[_Iterable[float]] = ..., prosperity: _Optional[_Iterable[float]] = ..., risk: _Optional[_Iterable[float]] = ..., complaint: _Optional[_Iterable[float]] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("base_utility", "creator_price", "cluster_price", "adjusted_utility", "floor_boost", "item_cap_dual", "creator_cap_dual", "cluster_cap_dual", "binding")
    BASE_UTILITY_FIELD_NUMBER: _ClassVar[int]
    CREATOR_PRICE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_PRICE_FIELD_NUMBER: _ClassVar[int]
    ADJUSTED_UTILITY_FIELD_NUMBER: _ClassVar[int]
    FLOOR_BOOST_FIELD_NUMBER: _ClassVar[int]
    ITEM_CAP_DUAL_FIELD_NUMBER: _ClassVar[int]
    CREATOR_CAP_DUAL_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_CAP_DUAL_FIELD_NUMBER: _ClassVar[int]
    BINDING_FIELD_NUMBER: _ClassVar[int]
    base_utility: _containers.RepeatedScalarFieldContainer[float]
    creator_price: _containers.RepeatedScalarFieldContainer[float]
    cluster_price: _containers.RepeatedScalarFieldContainer[float]
    adjusted_utility: _containers.RepeatedScalarFieldContainer[float]
    floor_boost: _containers.RepeatedScalarFieldContainer[float]
    item_cap_dual: _containers.RepeatedScalarFieldContainer[float]
    creator_cap_dual: _containers.RepeatedScalarFieldContainer[float]
    cluster_cap_dual: _containers.RepeatedScalarFieldContainer[float]
    binding: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, base_utility: _Optional[_Iterable[float]] = ..., creator_price: _Optional[_Iterable[float]] = ..., cluster_price: _Optional[_Iterable[float]] = ..., adjusted_utility: _Optional[_Iterable[float]] = ..., floor_boost: _Optional[_Iterable[float]] = ..., item_cap_dual: _Optional[_Iterable[float]] = ..., creator_cap_dual: _Optional[_Iterable[float]] = ..., cluster_cap_dual: _Optional[_Iterable[float]] = ..., binding: _Optional[_Iterable[str]] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("request_id", "weights", "ranking", "predictions", "explanation", "model_version", "plan_version", "policy_name", "degraded", "degraded_reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    RANKING_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    weights: _containers.RepeatedScalarFieldContainer[float]
    ranking: _containers.RepeatedScalarFieldContainer[int]
    predictions: HeadPredictions
    explanation: Explanation
    model_version: str
    plan_version: int
    policy_name: str
    degraded: bool
    degraded_reason: str
    def __init__(self, request_id: _Optional[str] = ..., weights: _Optional[_Iterable[float]] = ..., ranking: _Optional[_Iterable[int]] = ..., predictions: _Optional[_Union[HeadPredictions, _Mapping]] = ..., explanation: _Optional[_Union[Explanation, _Mapping]] = ..., model_version: _Optional[str] = ..., plan_version: _Optional[int] = ..., policy_name: _Optional[str] = ..., degraded: _Optional[bool] = ..., degraded_reason: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SurfacePolicy(_message.Message):
    __slots__ = ("surface", "policy_name", "policy_fingerprint")
    SURFACE_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    surface: str
    policy_name: str
    policy_fingerprint: str
    def __init__(self, surface: _Optional[str] = ..., policy_name: _Optional[str] = ..., policy_fingerprint: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_name", "model_version", "feature_names", "heads", "plan_version", "policy_name", "policy_fingerprint", "surfaces", "max_candidates", "surface_policies")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    HEADS_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SURFACES_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    SURFACE_POLICIES_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: str
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    heads: _containers.RepeatedScalarFieldContainer[str]
    plan_version: int
    policy_name: str
    policy_fingerprint: str
    surfaces: _containers.RepeatedScalarFieldContainer[str]
    max_candidates: int
    surface_policies: _containers.RepeatedCompositeFieldContainer[SurfacePolicy]
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[str] = ..., feature_names: _Optional[_Iterable[str]] = ..., heads: _Optional[_Iterable[str]] = ..., plan_version: _Optional[int] = ..., policy_name: _Optional[str] = ..., policy_fingerprint: _Optional[str] = ..., surfaces: _Optional[_Iterable[str]] = ..., max_candidates: _Optional[int] = ..., surface_policies: _Optional[_Iterable[_Union[SurfacePolicy, _Mapping]]] = ...) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ("bundle_path", "plan_path")
    BUNDLE_PATH_FIELD_NUMBER: _ClassVar[int]
    PLAN_PATH_FIELD_NUMBER: _ClassVar[int]
    bundle_path: str
    plan_path: str
    def __init__(self, bundle_path: _Optional[str] = ..., plan_path: _Optional[str] = ...) -> None: ...

class ReloadResponse(_message.Message):
    __slots__ = ("model_version", "plan_version")
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PLAN_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: str
    plan_version: int
    def __init__(self, model_version: _Optional[str] = ..., plan_version: _Optional[int] = ...) -> None: ...
