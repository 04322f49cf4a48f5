"""`gatewayctl import litellm`: a LiteLLM proxy config as a manifest root.

Thin: read the file, convert (gatewayctl/importers/litellm.py), check that the manifests
validate, write them under the output-folder rules (render/output_folder.py), print what was
not expressed. `render --target litellm` (the other way) is in cli.py's render.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from gatewayctl.errors import EXIT_OK, GatewayctlError, UsageError

import_app = typer.Typer(help="Convert another tool's configuration to manifests.",
                         no_args_is_help=True)


def _report(not_expressed: list[str], warnings: list[str],
            secrets: list[tuple[str, str, str]]) -> str:
    lines = ["# Imported from LiteLLM", "",
             "Review these manifests (`gatewayctl validate .`, `gatewayctl explain`), then "
             "move them into your manifest repository.", ""]
    if secrets:
        lines += ["## Secrets to create", "",
                  "| Secret | key | holds |", "|---|---|---|"]
        lines += [f"| {name} | {key} | {what} |" for name, key, what in secrets]
        lines.append("")
    if warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    lines += ["## Not expressed", ""]
    lines += [f"- {n}" for n in not_expressed] if not_expressed else ["- nothing"]
    return "\n".join(lines) + "\n"


def _check_manifests(files: dict[str, str]) -> None:
    """The import must give a root that validates; otherwise nothing is written."""
    from gatewayctl.manifests.manifest_set import load_manifest_set
    from gatewayctl.validate import format_text

    with tempfile.TemporaryDirectory(prefix="gatewayctl-import-") as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        mset, diags = load_manifest_set(Path(tmp))
        errors = [d for d in diags if d.is_error]
        if errors:
            raise GatewayctlError(
                "the imported manifests do not validate; nothing was written:\n"
                + format_text(diags, mset, colour=False).rstrip("\n"),
                hint="the LiteLLM config uses a value gatewayctl cannot take as it is; fix it "
                     "there, or import and edit the manifests by hand")


def litellm_command(
    config: Annotated[Path, typer.Argument(help="The LiteLLM proxy config (config.yaml).")],
    out: Annotated[Path, typer.Option(
        "--out", help="Folder to write the manifests to: new, empty, or an earlier import.")],
    gateway: Annotated[str, typer.Option(help="Name of the Gateway.")] = "ai-gateway",
    namespace: Annotated[str, typer.Option(help="The Gateway's namespace.")] = "ai-gateway",
) -> int:
    """Convert a LiteLLM proxy config to manifests; literal keys become secretRefs (and are
    never written); what gatewayctl cannot express is listed."""

    import yaml

    from gatewayctl.importers.litellm import ImportError_, import_litellm
    from gatewayctl.render.output_folder import check_folder, write_folder

    check_folder(out)
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"cannot read {config}: {err.strerror or err}",
                         hint="give the LiteLLM proxy config file") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {config}: not UTF-8 text",
                         hint="give the LiteLLM proxy config file (YAML, UTF-8)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise UsageError(f"{config}{where}: not valid YAML",
                         hint="give the LiteLLM proxy config file") from None
    try:
        result = import_litellm(data, gateway=gateway, namespace=namespace)
    except ImportError_ as err:
        raise UsageError(f"{config}: {err}", hint="give the LiteLLM proxy config file "
                         "(the one `litellm --config` reads)") from None
    _check_manifests(result.files)
    files = dict(result.files)
    files["IMPORT.md"] = _report(result.not_expressed, result.warnings, result.secrets)
    done = write_folder(out, files)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for line in result.not_expressed:
        print(f"not expressed: {line}", file=sys.stderr)
    print(f"imported {config} into {out}: {len(done.create) + len(done.update)} files "
          f"written; see {out}/IMPORT.md")
    return EXIT_OK


def register(app: typer.Typer) -> None:
    import_app.command("litellm")(litellm_command)
    app.add_typer(import_app, name="import")
