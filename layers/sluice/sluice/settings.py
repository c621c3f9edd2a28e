"""Runtime settings, read from the environment the template gives every function."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Environment of a Sluice function (``SLUICE_*`` variables set in template.yaml Globals)."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", extra="ignore")

    data_bucket: str = ""
    registry_table: str = ""
    topic_arn: str = ""
    stage: str = "dev"
    region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )
    # Seconds between two reads of the registry aliases by the API.
    alias_refresh_seconds: float = 60.0
    # Comma-separated API keys enforced by the app itself (local sandbox, uvicorn). On AWS,
    # API Gateway enforces keys and usage plans, and this stays empty.
    local_api_keys: str = ""
    # The usage plan's throttle and quota, applied per key by the app along with local_api_keys
    # (0: off). The sandbox sets them from the template's ApiThrottle*/ApiQuotaPerDay parameters.
    local_rate_limit: float = 0.0
    local_burst_limit: int = 0
    local_quota_per_day: int = 0
    # Inference capture (sluice.serving.capture): the predictions table, the share of requests
    # captured when a model's spec says nothing, the salt of hashed fields, and the S3 batching.
    predictions_table: str = ""
    capture_rate: float = 0.0
    capture_salt: str = ""
    capture_max_rows: int = 500
    capture_max_age_seconds: float = 60.0
    # Caps every spec's candidate-search budget (template parameter SearchBudgetSeconds; 0: no cap).
    search_budget_seconds: float = 0.0
    # Share of callers a challenger version serves when its spec sets none (monitoring.challenger_share).
    challenger_share: float = 0.1
    # Comma-separated models whose champions the api function loads during init (template parameter
    # PreloadModels; empty: each loads on the first request that needs it), and how long a request
    # waits for that load before loading the model itself.
    preload_models: str = ""
    preload_timeout_seconds: float = 10.0
    # Verified ONNX files kept on local disk by the API (sluice.serving.cache): the directory (empty:
    # sluice-models in the system's temporary directory, /tmp on Lambda) and its size bound (0: off).
    model_cache_dir: str = ""
    model_cache_mb: float = 256.0

    @property
    def preload_model_names(self) -> list[str]:
        return [name.strip() for name in self.preload_models.split(",") if name.strip()]

    def require(self, *names: str) -> None:
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            from sluice.errors import ConfigurationError

            env = ", ".join("SLUICE_" + n.upper() for n in missing)
            raise ConfigurationError(f"missing environment variable(s): {env}")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
