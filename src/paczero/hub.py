"""Share a release bundle on the Hugging Face Hub: the model and its card at the top of the repo (so that
``from_pretrained(REPO)`` and the Hub's model page work), the rest of the bundle under ``release/``."""

from __future__ import annotations

from pathlib import Path

from paczero.export import MANIFEST
from paczero.rundir import MODEL

RELEASE = "release"


def hub_path(rel: str) -> str:
    """Where a bundle file goes in the repo: ``model/x`` → ``x``; anything else → ``release/…``."""
    head, _, rest = rel.partition("/")
    return rest if head == MODEL and rest else f"{RELEASE}/{rel}"


def push_bundle(bundle: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload an export bundle to ``repo_id`` in one commit (the repo is created if needed); returns its URL.

    Only the bundle's files are sent: an export holds nothing that may not leave the machine.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    bundle = Path(bundle)
    if not (bundle / MANIFEST).is_file():
        raise FileNotFoundError(f"{bundle} is not an export bundle (no {MANIFEST}); run paczero export")
    if not (bundle / MODEL).is_dir():
        raise ValueError(f"{bundle} holds no model (exported with --transcript-only): nothing to share")
    operations = [
        CommitOperationAdd(path_in_repo=hub_path(path.relative_to(bundle).as_posix()), path_or_fileobj=path)
        for path in sorted(bundle.rglob("*"))
        if path.is_file()
    ]
    api = HfApi(token=token)
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.create_commit(
            repo_id=repo_id, operations=operations, commit_message="paczero export", repo_type="model"
        )
    except Exception as err:  # the Hub client raises network, HTTP and auth errors of many kinds
        raise RuntimeError(
            f"could not push {bundle} to {repo_id} ({type(err).__name__}: {err}); the bundle is complete: "
            "log in with `hf auth login` and push again"
        ) from None
    return str(repo)
