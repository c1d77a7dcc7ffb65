"""The MLflow model registry's store: where it is, and the versions it holds.

:func:`use_tracking` points MLflow at the configured store; a version is found by number or
alias (``models:/NAME/3``, ``models:/NAME@champion``: :func:`resolve`), listed, and its model
bundle downloaded (:func:`download_bundle`, or once per machine: :func:`cached_bundle`).
Runs are logged and versions registered by :mod:`llmrec.registry.runs`; aliases move with
:mod:`llmrec.registry.aliases`.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from llmrec.config import RegistryConfig

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


class ModelNotFoundError(LookupError):
    """A model URI does not resolve to a registered version."""


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a registered model."""

    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def use_tracking(cfg: RegistryConfig) -> str:
    """Point MLflow at the configured store and experiment (created with its artifact root)."""
    uri = cfg.resolved_tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    if client.get_experiment_by_name(cfg.experiment) is None:
        location = cfg.artifact_location
        if "://" not in location:
            location = Path(location).resolve().as_uri()
        client.create_experiment(cfg.experiment, artifact_location=location)
    mlflow.set_experiment(cfg.experiment)
    return uri


def get_version(name: str, version: str, run_id: str | None = None) -> RegisteredVersion:
    """A registered version with its current aliases."""
    client = MlflowClient()
    mv = client.get_model_version(name, version)
    aliases = tuple(
        sorted(
            a
            for a, v in client.get_registered_model(name).aliases.items()
            if str(v) == str(version)
        )
    )
    return RegisteredVersion(name, str(mv.version), run_id or mv.run_id or "", aliases)


def list_versions(name: str) -> list[tuple[RegisteredVersion, int, str | None]]:
    """Every registered version of model ``name``, newest first: (the version, its
    registration time in Unix milliseconds, its description).

    Raises:
        ModelNotFoundError: no model of that name.
    """
    if not name.isprintable():
        raise ModelNotFoundError(f"{name!r} is not a registered model's name")
    client = MlflowClient()
    try:
        aliases = client.get_registered_model(name).aliases
        found = client.search_model_versions(f"name = '{name.replace(chr(39), '')}'")
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"no registered model {name!r} at {mlflow.get_tracking_uri()}: "
            f"{exc.message.splitlines()[0]}"
        ) from exc
    out = []
    for mv in sorted(found, key=lambda v: -int(v.version)):
        named = tuple(sorted(a for a, v in aliases.items() if str(v) == str(mv.version)))
        version = RegisteredVersion(name, str(mv.version), mv.run_id or "", named)
        out.append((version, int(mv.creation_timestamp or 0), mv.description or None))
    return out


def model_name(uri: str) -> str:
    """The registered model's name in ``models:/NAME/N`` or ``models:/NAME@ALIAS``.

    Raises:
        ModelNotFoundError: malformed URI.
    """
    m = _URI.match(uri.strip())
    if m is None:
        raise ModelNotFoundError(
            f"model URI {uri!r} must look like models:/NAME/VERSION or models:/NAME@ALIAS"
        )
    return m["name"]


def resolve(uri: str) -> RegisteredVersion:
    """Resolve ``models:/name/3`` or ``models:/name@champion`` to a concrete version.

    Raises:
        ModelNotFoundError: malformed URI, unknown model, version or alias.
    """
    m = _URI.match(uri.strip())
    if m is None:
        raise ModelNotFoundError(
            f"model URI {uri!r} must look like models:/NAME/VERSION or models:/NAME@ALIAS"
        )
    name = m["name"]
    if not name.isprintable():  # control characters, lone surrogates: no model has them
        raise ModelNotFoundError(f"model URI {uri!r} names no registered model")
    client = MlflowClient()
    try:
        version = (
            m["version"]
            if m["version"]
            else client.get_model_version_by_alias(name, m["alias"]).version
        )
        return get_version(name, str(version))
    except MlflowException as exc:
        raise ModelNotFoundError(
            f"{uri} does not resolve in the registry at {mlflow.get_tracking_uri()}: "
            f"{exc.message.splitlines()[0]}. Train one first: python jobs/finetune.py"
        ) from exc


def download_bundle(uri: str, dst: str | Path | None = None) -> tuple[RegisteredVersion, Path]:
    """Resolve ``uri`` and download that version's bundle; returns the version and the folder."""
    version = resolve(uri)
    target = Path(dst or tempfile.mkdtemp(prefix=f"llmrec-{version.name}-{version.version}-"))
    local = mlflow.artifacts.download_artifacts(artifact_uri=version.uri, dst_path=str(target))
    return version, _bundle_folder(Path(local) / "artifacts")


def _bundle_folder(artifacts: Path) -> Path:
    """The bundle inside a pyfunc model's ``artifacts/`` (logged under its folder's name)."""
    if (artifacts / "bundle").is_dir():
        return artifacts / "bundle"
    folders = [p for p in artifacts.iterdir() if (p / "config.yaml").exists()]
    if len(folders) != 1:
        raise ModelNotFoundError(f"{artifacts} holds no single model bundle: {folders}")
    return folders[0]


def cached_bundle(uri: str, root: str | Path | None = None) -> tuple[RegisteredVersion, Path]:
    """Like :func:`download_bundle`, but each version is downloaded once per machine into
    ``root`` (default ``$TMPDIR/llmrec-bundles``) and shared by every process that asks:
    serving replicas on one node read the same copy. Versions are immutable, so a complete
    copy never goes stale."""
    version = resolve(uri)
    base = Path(root or Path(tempfile.gettempdir()) / "llmrec-bundles")
    safe = re.sub(r"[^\w.\-]+", "_", f"{version.name}-{version.version}-{version.run_id}")
    final = base / safe
    if not (final / "config.yaml").exists():
        base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{safe}-", dir=base))
        _, bundle = download_bundle(version.uri, staging)
        try:
            bundle.rename(final)  # atomic: another process may have won the race
        except OSError:
            if not (final / "config.yaml").exists():
                raise
        shutil.rmtree(staging, ignore_errors=True)
    return version, final


def require_version(name: str, version: str) -> RegisteredVersion:
    """Registered ``version`` of model ``name``.

    Raises:
        ModelNotFoundError: no such model or version (the message lists the versions).
    """
    if not str(version).isdigit():
        raise ModelNotFoundError(f"a version is a number, got {version!r}")
    known = [v.version for v, _, _ in list_versions(name)]  # raises for an unknown model
    if str(int(version)) not in known:
        raise ModelNotFoundError(
            f"{name} has no version {version} at {mlflow.get_tracking_uri()} (registered: "
            f"{', '.join(known[::-1]) or 'none'})"
        )
    return get_version(name, str(int(version)))


def version_info(name: str, version: str) -> tuple[dict[str, float], dict[str, str]]:
    """The metrics of the run that produced ``version`` and the version's tags."""
    client = MlflowClient()
    mv = client.get_model_version(name, version)
    metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    return dict(metrics), dict(mv.tags)
