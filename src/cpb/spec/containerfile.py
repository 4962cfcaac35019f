"""What may reach the Containerfile: patterns and the schemas of cekit's own keys.

cekit pastes many descriptor values into the Containerfile without escaping
(see cekit/templates/template.jinja): ENV and LABEL values inside "...",
USER, WORKDIR, COPY sources and destinations, package names, module names
and versions (even in comments), CMD/ENTRYPOINT items inside [...]. A
newline there ends the Containerfile line, and the next line is a step of
the project's choosing (`RUN --mount=...` reaches the host on buildah
< 1.35, CVE-2024-1753). So every such value, whether it comes from
cpb.yaml, a module.yaml or the `cekit:` escape hatch, is checked here by
the same rules.
"""

from __future__ import annotations

from typing import Any

# Text inside "..." (ENV, LABEL, ARG values, USER): no quote, backslash or
# line break of any kind (C0/C1 controls, U+2028/U+2029).
_BREAKS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
CONTAINERFILE_TEXT = rf'^[^"\\{_BREAKS}]*$'
UNESCAPED = ("contains a double quote, backslash or control character (a newline?), which "
             "cekit writes into the Containerfile unescaped; avoid them here")
# A file name cekit pastes bare into COPY (artifact name and target): no
# space (it would split the step), no '$' (expanded), no leading '-' (a flag)
# or '.' ('..'), no '/'.
SAFE_FILE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.+@=~,-]{0,254}$"
SAFE_FILE_MESSAGE = ("is not a safe file name: letters, digits and _ . + @ = ~ , - only, "
                     "starting with a letter, digit or _ (cekit writes it into the "
                     "Containerfile unquoted)")
# An absolute path inside the image, pasted bare into COPY (artifact dest).
SAFE_IMAGE_DIR = r"^/(?!.*(^|/)\.\.(/|$))[A-Za-z0-9_.+@=~,/-]*$"
SAFE_IMAGE_DIR_MESSAGE = ("is not a safe absolute folder in the image: letters, digits, / and "
                          "_ . + @ = ~ , - only, no '..' (cekit writes it unquoted)")
# An absolute path inside the image written where spaces are harmless (WORKDIR, VOLUME [...]).
IMAGE_PATH_PATTERN = rf'^/(?!.*(^|/)\.\.(/|$))[^"\\{_BREAKS}]*$'
MODULE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
# A module's version: cekit writes it into a comment line of the Containerfile.
MODULE_VERSION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,62}$"
PACKAGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9+._:=~*-]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
LABEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"
# A module script, relative to the module: pasted into RUN [ "sh", "-x", "..." ].
SCRIPT_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*(/[A-Za-z0-9_][A-Za-z0-9_.+-]*)*$"
# Flags pasted into every package-manager RUN line.
MANAGER_FLAGS_PATTERN = r"^[A-Za-z0-9 _.,=:/+-]*$"
CHECKSUM_LENGTHS = {"sha256": 64, "sha512": 128, "sha1": 40, "md5": 32}

TEXT: dict[str, Any] = {"type": "string", "pattern": CONTAINERFILE_TEXT, "x-message": UNESCAPED}
SCALAR: dict[str, Any] = {"type": ["string", "integer", "number", "boolean"],
                          "pattern": CONTAINERFILE_TEXT, "x-message": UNESCAPED}
# cekit writes CMD/ENTRYPOINT as ["a", "b"] without escaping.
ARGV: dict[str, Any] = {
    "type": "array", "minItems": 1,
    "items": {"type": "string", "pattern": CONTAINERFILE_TEXT,
              "x-message": "contains a double quote, backslash or control character, which "
                           "cekit writes into the Containerfile unescaped; avoid them here"},
    "description": "exec form: a list of arguments, never a shell string; "
                   "no double quotes, backslashes or control characters (cekit does not "
                   "escape them)"}
USER: dict[str, Any] = {"type": ["string", "integer"], "pattern": CONTAINERFILE_TEXT,
                        "x-message": UNESCAPED}
WORKDIR: dict[str, Any] = {"type": "string", "pattern": IMAGE_PATH_PATTERN,
                           "x-message": "is not an absolute path in the image without '..', "
                                        "quotes, backslashes or control characters"}
SAFE_NAME: dict[str, Any] = {"type": "string", "pattern": SAFE_FILE_NAME,
                             "x-message": SAFE_FILE_MESSAGE}
SAFE_DEST: dict[str, Any] = {"type": "string", "pattern": SAFE_IMAGE_DIR,
                             "x-message": SAFE_IMAGE_DIR_MESSAGE}
PACKAGES: dict[str, Any] = {"type": "array", "items": {"type": "string",
                                                      "pattern": PACKAGE_PATTERN}}
CHECKSUMS: dict[str, Any] = {
    algorithm: {"type": "string", "pattern": f"^[0-9a-fA-F]{{{length}}}$",
                "x-message": f"is not a {algorithm} checksum ({length} hex digits)"}
    for algorithm, length in CHECKSUM_LENGTHS.items()}


def _named_list(name_pattern: str, value: dict[str, Any], required: tuple[str, ...] = ("name",)
                ) -> dict[str, Any]:
    """cekit's [{name, value, description, example}] lists (envs, labels, args)."""
    return {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": list(required),
        "properties": {"name": {"type": "string", "pattern": name_pattern},
                       "value": value, "description": TEXT, "example": SCALAR}}}


def cekit_keys() -> dict[str, Any]:
    """cekit descriptor keys that change only what happens inside the container build."""
    return {
        "description": TEXT,
        "envs": _named_list(ENV_NAME_PATTERN, SCALAR),
        "labels": _named_list(LABEL_NAME_PATTERN, TEXT, ("name", "value")),
        "args": _named_list(ENV_NAME_PATTERN, TEXT),
        "ports": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["value"],
            "properties": {"value": {"type": "integer", "minimum": 1, "maximum": 65535},
                           "protocol": {"enum": ["tcp", "udp"]},
                           "service": {"type": "string", "pattern": MODULE_PATTERN},
                           "expose": {"type": "boolean"}, "description": TEXT}}},
        "packages": {
            "type": "object", "additionalProperties": False,
            "x-refused": {
                "repositories": "is not allowed here: cekit would fetch or read repository "
                                "files on the host",
                "content_sets": "is not allowed here: it is for OSBS builds, which cpb does "
                                "not run",
                "content_sets_file": "is not allowed here: cekit would read a file on the "
                                     "host"},
            "properties": {"install": PACKAGES, "remove": PACKAGES, "reinstall": PACKAGES,
                           "manager": {"enum": ["apt-get", "apk", "dnf", "microdnf", "yum"]},
                           "manager_flags": {"type": "string", "pattern": MANAGER_FLAGS_PATTERN,
                                             "x-message": "may hold only letters, digits, "
                                                          "spaces and _ . , = : / + -"}}},
        "run": {"type": "object", "additionalProperties": False,
                "properties": {"user": USER, "workdir": WORKDIR, "cmd": ARGV,
                               "entrypoint": ARGV}},
        "volumes": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["path"],
            "properties": {"path": WORKDIR,
                           "name": {"type": "string", "pattern": MODULE_PATTERN}}}},
    }


_HOST_KEYS = {
    "help": "makes cekit render a template with unsandboxed Jinja2 on the host",
    "osbs": "names files on the host (OSBS configuration, extra folders)",
    "follow_tag": "asks a registry for the base image, outside cpb's control",
}
# What the `cekit:` escape hatch may not set, and why (shown in the error).
HATCH_REFUSED = {
    **{key: "is set by cpb and cannot be overridden here"
       for key in ("name", "version", "from", "schema_version")},
    **{key: f"is not allowed in the cekit: escape hatch: it {why}"
       for key, why in _HOST_KEYS.items()},
    "artifacts": "is not allowed in the cekit: escape hatch: cekit would read or fetch them on "
                 "the host; use the image's 'artifacts:'",
    "modules": "is not allowed in the cekit: escape hatch: it names folders on the host; use "
               "the image's 'modules:'",
}
CEKIT_HATCH: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "x-refused": HATCH_REFUSED,
    "description": "merged into the rendered cekit descriptor (escape hatch); only keys that "
                   "change what happens inside the container build",
    "properties": cekit_keys(),
}


def module_schema() -> dict[str, Any]:
    """The JSON Schema of a module's module.yaml, as cpb accepts it."""
    artifact = {
        "type": "object", "additionalProperties": False,
        "description": "give exactly one of 'path' (a file of the module) or 'url' (with a "
                       "checksum)",
        "properties": {
            "path": {"type": "string", "minLength": 1},
            "url": {"type": "string", "pattern": r"^https?://[^/\s]+/?\S*$",
                    "x-message": "is not an http:// or https:// URL"},
            "name": SAFE_NAME, "target": SAFE_NAME, "dest": SAFE_DEST, "description": TEXT,
            **CHECKSUMS,
        },
    }
    refused = {key: f"is not allowed in a module: it {why}" for key, why in _HOST_KEYS.items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "module.yaml: a cekit module, as cpb accepts it",
        "type": "object", "additionalProperties": False, "required": ["name", "version"],
        "x-refused": {**refused,
                      "from": "is not allowed in a module: the image's 'from' is set by cpb"},
        "properties": {
            "schema_version": {"type": "integer"},
            "name": {"type": "string", "pattern": MODULE_PATTERN},
            "version": {"type": ["string", "number"], "pattern": MODULE_VERSION_PATTERN,
                        "x-message": "is not a module version (letters, digits, _ . + -)"},
            "release": {"type": ["string", "number"], "pattern": MODULE_VERSION_PATTERN},
            **cekit_keys(),
            "artifacts": {"type": "array", "items": artifact},
            "modules": {"type": "object", "additionalProperties": False,
                        "x-refused": {"repositories": "is not allowed in a module: it names "
                                      "folders or repositories on the host; cpb finds modules "
                                      "in modules/"},
                        "properties": {"install": {"type": "array", "items": {
                            "type": "object", "additionalProperties": False,
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string", "pattern": MODULE_PATTERN},
                                "version": {"type": ["string", "number"],
                                            "pattern": MODULE_VERSION_PATTERN}}}}}},
            "execute": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["script"],
                "properties": {
                    "script": {"type": "string", "pattern": SCRIPT_PATTERN,
                               "x-message": "is not a script of the module (a relative path "
                                            "of letters, digits and _ . + -)"},
                    "user": USER, "name": TEXT}}},
        },
    }


MODULE_SCHEMA = module_schema()
