"""Problems of the environment a user can fix (missing weights, missing credentials, no permission):
checked before anything is computed where they can be, and turned into one-paragraph errors (exit 2)."""

from __future__ import annotations

from fsspec.core import url_to_fs

from pipelines.errors import UserError, exception_chain, missing_package
from pipelines.spec import JobSpec

BACKBONE_FILES = {"bert": ("config.json", "model.safetensors", "tokenizer.json")}
"""Files a backbone directory must hold, by kind (``cnn`` and ``inception``: a weights file or a directory)."""
WEIGHT_CHOICES = {"cnn": ("model.safetensors", "model.npz"), "inception": ("model.safetensors", "model.npz")}
"""Files of which a backbone directory must hold one, by kind (the weights of ``cnn`` and ``inception``)."""

_CREDENTIAL_ERRORS = frozenset(
    {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError", "RefreshError", "NoAuthHandlerFound"}
)
_DENIED_ERRORS = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "Forbidden"})


def check_backbone_weights(spec: JobSpec) -> None:
    """The backbone's weights exist where ``backbone.weights`` says (every file its kind reads).

    Raises:
        UserError: the location or one of its files is missing, or cannot be read.
    """
    backbone = spec.backbone
    if backbone is None:
        return
    where = f"{spec.source}: backbone.weights {backbone.weights!r}"
    try:
        fs, root = url_to_fs(backbone.weights)
        if not fs.exists(root):
            raise UserError(
                f"{where}: no such file or directory. Set backbone.weights to the {backbone.kind} checkpoint "
                "(e.g. --set backbone.weights=PATH)."
            )
        directory = fs.isdir(root)
        needed = BACKBONE_FILES.get(backbone.kind, ()) if directory else ()
        missing = [name for name in needed if not fs.exists(f"{root.rstrip('/')}/{name}")]
        choices = WEIGHT_CHOICES.get(backbone.kind, ()) if directory else ()
        if choices and not any(fs.exists(f"{root.rstrip('/')}/{name}") for name in choices):
            missing.append(" or ".join(choices))
    except UserError:
        raise
    except Exception as exc:
        message = describe(exc)
        if message is None:
            raise
        raise UserError(f"{where}: {message}") from None
    if missing:
        raise UserError(f"{where}: the directory lacks {', '.join(missing)} (a {backbone.kind} checkpoint has them).")


def unreachable(exc: BaseException) -> str | None:
    """One sentence for an object store that could not be reached or did not answer in time (a connection refused
    or timed out, anywhere in ``exc``'s chain); None for anything else."""
    for current in exception_chain(exc):
        if type(current).__name__ in _UNREACHABLE or isinstance(current, ConnectionError | TimeoutError):
            return (
                f"the storage could not be reached or did not answer ({type(current).__name__}: {current}); nothing "
                "was written. Check the endpoint (storage_options.endpoint_url, AWS_ENDPOINT_URL) and the network, "
                "then try again."
            )
    return None


_UNREACHABLE = frozenset(
    {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError", "FSTimeoutError"}
)


def describe(exc: BaseException) -> str | None:
    """One sentence for a credentials or permission error, a path of the wrong kind (a directory for a file, a
    file for a directory) or an object store whose package is not installed, anywhere in ``exc``'s chain; None for
    anything else."""
    for current in exception_chain(exc):
        name = type(current).__name__
        code = (
            str(getattr(current, "response", {}).get("Error", {}).get("Code", ""))
            if hasattr(current, "response")
            else ""
        )
        missing = missing_package(current)
        if missing is not None:
            return f"{missing}."
        if name in _CREDENTIAL_ERRORS:
            return (
                f"no credentials for the object store ({name}: {current}). Provide them the usual way (environment "
                "variables, a profile, an instance role) or in storage_options, e.g. ${env:NAME}."
            )
        if isinstance(current, PermissionError) or code in _DENIED_ERRORS or name in _DENIED_ERRORS:
            return f"permission denied ({current}). Check the credentials' rights on this location."
        if isinstance(current, IsADirectoryError | NotADirectoryError | FileExistsError):
            path = current.filename or "a path"
            what = {
                IsADirectoryError: "is a directory where a file was expected",
                NotADirectoryError: "lies under a file where a directory was expected",
                FileExistsError: "is a file where a directory was expected",
            }[type(current)]
            return f"{path} {what}. Check the paths given on the command line or in the spec."
    return None
