"""The JSON Schema of cpb.yaml, and a small validator for the subset it uses.

The schema is the single source of truth: the loader validates against it,
and `cpb schema` (and the shipped `cpb.schema.json`) give it to editors.
The validator knows only the keywords used here, so its messages can be
specific: the field path, the position, and "did you mean" for a typo.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from cpb.errors import SpecError
from cpb.spec.containerfile import (
    ARGV,
    CEKIT_HATCH,
    CHECKSUMS,
    CONTAINERFILE_TEXT,
    ENV_NAME_PATTERN,
    IMAGE_PATH_PATTERN,
    LABEL_NAME_PATTERN,
    MODULE_PATTERN,
    PACKAGE_PATTERN,
    PACKAGES,
    SAFE_DEST,
    SAFE_FILE_NAME,
    SAFE_NAME,
    SCALAR,
    UNESCAPED,
    USER,
    WORKDIR,
)
from cpb.spec.yamlload import Located, LocatedList, Mark
from cpb.util import did_you_mean

NAME_PATTERN = r"^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$"
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
FILE_NAME_PATTERN = SAFE_FILE_NAME
_UNESCAPED = UNESCAPED
REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"
ARTIFACT_URL_PATTERN = r"^(https?://[^/\s]+|file://)/?\S*$"
# 1-65535, as a regular expression (for the places a port is part of a string)
PORT_PATTERN = (r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}"
                r"|[1-9][0-9]{0,3})")
# host[:port][/path]: no scheme (HTTPS unless tls_verify: false allows HTTP), no tag.
REGISTRY_URL_PATTERN = (rf"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:{PORT_PATTERN})?"
                        r"(/[a-z0-9]+([._-][a-z0-9]+)*)*/?$")
# Refused before the pattern, each with its own message and without echoing
# the value: a URL with a password in it must not end up in a terminal or a CI log.
_CREDENTIALS = ("holds credentials (user:password@); cpb.yaml is shared and printed, so it "
                "takes no secrets")
REGISTRY_URL_REJECT = [
    ["@", f"{_CREDENTIALS}: run `podman login HOST` instead (cpb uses podman's auth file)"],
    [r"\s", "contains white space"],
    ["^[A-Za-z][A-Za-z0-9+.-]*:/", "has a scheme; write host[:port][/path] (and "
                                   "`tls_verify: false` for plain HTTP)"],
]
ARTIFACT_URL_REJECT = [
    ["^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@", _CREDENTIALS],
    [r"\s", "contains white space; write it %20"],
]

_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}
_ARGV = ARGV
_SCALAR = SCALAR


def _image_common() -> dict[str, Any]:
    """Properties an image and the `defaults` section share."""
    return {
        "modules": {"type": "array", "description": "modules/ beside cpb.yaml first, then cpb's",
                    "items": {"type": "string", "pattern": MODULE_PATTERN}},
        "packages": PACKAGES,
        "packages_manager": {"enum": ["apt-get", "apk", "dnf", "microdnf", "yum", "zypper"]},
        "artifacts": {"type": "array", "items": {"$ref": "#/$defs/artifact"}},
        "env": {"type": "object", "propertyNames": {"pattern": ENV_NAME_PATTERN},
                "additionalProperties": _SCALAR},
        "labels": {"type": "object", "propertyNames": {"pattern": LABEL_NAME_PATTERN},
                   "additionalProperties": _SCALAR},
        "ports": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}},
        "user": USER,
        "workdir": WORKDIR,
        "cmd": _ARGV,
        "entrypoint": _ARGV,
        "cekit": CEKIT_HATCH,
    }


def _build_schema() -> dict[str, Any]:
    image = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "from": {"type": "string", "pattern": REFERENCE_PATTERN, "description":
                     "another image of this spec, or an external image reference"},
            "rootfs": {"$ref": "#/$defs/rootfs"},
            "version": {"type": "string", "pattern": TAG_PATTERN},
            "description": {"type": "string", "pattern": CONTAINERFILE_TEXT,
                            "x-message": _UNESCAPED},
            **_image_common(),
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "cpb.yaml: images and pods for a ComputePod",
        "type": "object",
        "additionalProperties": False,
        "required": ["project", "images"],
        "properties": {
            "project": {"type": "string", "pattern": NAME_PATTERN},
            "registry": {
                "type": "object", "additionalProperties": False, "required": ["url"],
                "description": "push target and build cache shared by every machine; "
                               "credentials come from podman's auth file, never from here",
                "properties": {
                    "url": {"type": "string", "pattern": REGISTRY_URL_PATTERN,
                            "x-reject": REGISTRY_URL_REJECT,
                            "x-message": "is not host[:port][/path] (no scheme, a port "
                                         "1-65535, a lowercase path), e.g. 127.0.0.1:5000/farm",
                            "description": "host[:port][/path]; images go to <url>/<image>"},
                    "tls_verify": {"type": "boolean", "description":
                                   "false: do not check the certificate, and fall back to "
                                   "plain HTTP, as podman's --tls-verify=false (default true; "
                                   "for a private CA, put it in certs.d instead)"},
                },
            },
            "defaults": {"type": "object", "additionalProperties": False,
                         "properties": _image_common()},
            "images": {"type": "object", "minProperties": 1,
                       "propertyNames": {"pattern": NAME_PATTERN},
                       "additionalProperties": {"$ref": "#/$defs/image"}},
            **pod_properties(),
        },
        "$defs": {
            "image": image,
            **pod_defs(),
            "rootfs": {
                "type": "object", "additionalProperties": False,
                "minProperties": 1, "maxProperties": 1,
                "properties": {
                    "tar": {"type": "string", "minLength": 1},
                    "debootstrap": {"$ref": "#/$defs/debootstrap"},
                },
            },
            "debootstrap": {
                "type": "object", "additionalProperties": False, "required": ["suite"],
                "properties": {
                    "suite": {"type": "string", "pattern": _DEBIAN_NAME},
                    "variant": {"enum": ["minbase", "buildd", "fakechroot", "-"]},
                    "include": {"type": "array", "items": {
                        "type": "string", "pattern": r"^[a-z0-9][a-z0-9+.-]*$"}},
                    "components": {"type": "array", "items": {
                        "type": "string", "pattern": _DEBIAN_NAME}},
                    "mirror": {"type": "string", "pattern": r"^(https?|file)://\S+$"},
                },
            },
            "artifact": {
                "type": "object", "additionalProperties": False,
                "description": "give exactly one of 'path' or 'url'; a url needs a checksum",
                "properties": {
                    "path": {"type": "string", "minLength": 1,
                             "description": "a local file, relative to cpb.yaml"},
                    "url": {"type": "string", "pattern": ARTIFACT_URL_PATTERN,
                            "x-reject": ARTIFACT_URL_REJECT,
                            "x-message": "is not an http://, https:// or file:// URL",
                            "description": "fetched on the host into cpb's artifact cache"},
                    **CHECKSUMS,
                    "size": {"type": "integer", "minimum": 0,
                             "description": "a url artifact's size in bytes: the download "
                                            "stops once it is exceeded (default limit 2 GiB, "
                                            "$CPB_MAX_DOWNLOAD)"},
                    "name": SAFE_NAME,
                    "target": SAFE_NAME,
                    "dest": SAFE_DEST,
                },
            },
        },
    }


# -- pods ----------------------------------------------------------------------

# Kubernetes' quantity syntax (resource.Quantity), unsigned: "250m", "0.5", ".5", "64Mi",
# "1G", "1e3". Requests cannot be negative.
QUANTITY_PATTERN = (r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)"
                    r"([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
_QUANTITY_MESSAGE = ('is not a Kubernetes quantity (a number and a suffix: "250m", "0.5", '
                     '"64Mi", "1G")')
_OCTET = r"(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])"
# the numbers' range (1-65535) is checked by pods.py, with a message of its own
PUBLISH_PATTERN = (rf"^({_OCTET}(\.{_OCTET}){{3}}:)?"
                   r"[0-9]{1,5}:[0-9]{1,5}(/(tcp|udp))?$")
# DNS names (RFC 1123 subdomains): labels of letters, digits and '-', joined by dots
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
HOST_PATTERN = rf"^(?=.{{1,253}}$){_DNS_LABEL}(\.{_DNS_LABEL})*$"
IP_PATTERN = r"^([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*)$"
# Kubernetes label keys: [DNS subdomain prefix/]name, the name at most 63 characters
LABEL_KEY_PATTERN = (rf"^((?=[^/]{{1,253}}/){_DNS_LABEL}(\.{_DNS_LABEL})*/)?"
                     r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$"
K8S_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$"
# A pod's env values go into a YAML manifest, quoted, not into a Containerfile: quotes,
# backslashes and new lines are fine there; other control characters are refused.
_POD_SCALAR = {"type": ["string", "integer", "number", "boolean"],
               "pattern": r"^[^\x00-\x08\x0b-\x1f\x7f]*$",
               "x-message": "contains a control character (other than a tab or new line)"}
_ENV_MAP = {"type": "object", "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
            "additionalProperties": _POD_SCALAR}
_RESOURCES = {"type": "object", "additionalProperties": False,
              "description": "resource requests of each container (Kubernetes quantities)",
              "properties": {
                  "cpu": {"type": ["string", "number"], "pattern": QUANTITY_PATTERN,
                          "minimum": 0, "x-message": _QUANTITY_MESSAGE},
                  "memory": {"type": "string", "pattern": QUANTITY_PATTERN,
                             "x-message": _QUANTITY_MESSAGE}}}


def _pod_common() -> dict[str, Any]:
    """Properties a pod and `pod_defaults` share."""
    return {
        "labels": {"type": "object", "description": "Kubernetes labels of the pod",
                   "propertyNames": {
                       "pattern": LABEL_KEY_PATTERN,
                       "x-message": "is not a Kubernetes label key ([PREFIX/]NAME: PREFIX a DNS "
                                    "name, NAME at most 63 letters, digits, '-', '_' or '.', "
                                    "beginning and ending with a letter or digit)"},
                   "additionalProperties": {
                       "type": "string", "pattern": LABEL_VALUE_PATTERN,
                       "x-message": "is not a Kubernetes label value (at most 63 letters, "
                                    "digits, '-', '_' or '.', beginning and ending with a "
                                    "letter or digit)"}},
        "hosts": {"type": "object", "description": "extra /etc/hosts entries: name -> IP",
                  "propertyNames": {"pattern": HOST_PATTERN},
                  "additionalProperties": {"type": "string", "pattern": IP_PATTERN}},
        "env": {**_ENV_MAP, "description": "set in every container of the pod"},
        "resources": _RESOURCES,
        "restart": {"enum": ["Always", "OnFailure", "Never"]},
        "stop_timeout": {"type": "integer", "minimum": 0, "maximum": 3600,
                         "description": "seconds a container gets to stop before it is killed"},
    }


def pod_properties() -> dict[str, Any]:
    return {
        "pod_defaults": {"type": "object", "additionalProperties": False,
                         "properties": _pod_common()},
        "pods": {"type": "object", "propertyNames": {"pattern": NAME_PATTERN},
                 "additionalProperties": {"$ref": "#/$defs/pod"}},
    }


def pod_defs() -> dict[str, Any]:
    return {
        "pod": {
            "type": "object", "additionalProperties": False, "required": ["containers"],
            "properties": {
                "containers": {"type": "array", "minItems": 1,
                               "items": {"$ref": "#/$defs/container"}},
                "ports": {"type": "array", "description":
                          "published ports: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]",
                          "items": {"type": "string", "pattern": PUBLISH_PATTERN,
                                    "x-message": "is not a published port; write "
                                                 "'[HOST_IP:]HOST_PORT:CONTAINER_PORT', "
                                                 "quoted, e.g. \"4222:4222\""}},
                **_pod_common(),
            },
        },
        "container": {
            "type": "object", "additionalProperties": False, "required": ["image"],
            "properties": {
                "image": {"type": "string", "pattern": NAME_PATTERN,
                          "description": "an image of this spec"},
                "name": {"type": "string", "pattern": K8S_NAME_PATTERN,
                         "x-message": "is not a container name (at most 42 lowercase letters, "
                                      "digits or '-', beginning and ending with a letter or "
                                      "digit)",
                         "description": "the container's name in the pod (default: the image's)"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 256},
                "role": {"enum": ["service", "worker"], "description":
                         "for `cpb kube --cluster`: a service gets a Service in front of it "
                         "(default: service when it has ports, else worker)"},
                "env": _ENV_MAP,
                "command": {**_STRINGS, "minItems": 1,
                            "description": "replaces the image's entrypoint"},
                "args": {**_STRINGS, "description": "replaces the image's cmd"},
                "ports": {"type": "array", "description": "ports it listens on, besides the "
                          "image's own", "items": {"type": "integer", "minimum": 1,
                                                   "maximum": 65535}},
                "volumes": {"type": "array", "items": {"$ref": "#/$defs/volume"}},
                "resources": _RESOURCES,
                "workdir": {"type": "string", "pattern": IMAGE_PATH_PATTERN},
                "security": {
                    "type": "object", "additionalProperties": False,
                    "description": "the cluster form's securityContext (docs/pods.md)",
                    "properties": {"restricted": {
                        "type": "boolean", "description":
                        "default true: what the Kubernetes 'restricted' Pod Security "
                        "Standard asks (no privilege escalation, no capabilities, "
                        "seccomp RuntimeDefault, non-root when the image's user is a "
                        "non-zero uid); false for an image that needs more"}}},
            },
        },
        "volume": {
            "type": "object", "additionalProperties": False, "required": ["mount"],
            "description": "give one of 'host' (a folder, relative to cpb.yaml) or 'volume' "
                           "(a named volume)",
            "properties": {
                "host": {"type": "string", "minLength": 1},
                "volume": {"type": "string", "pattern": K8S_NAME_PATTERN,
                           "x-message": "is not a volume name (at most 42 lowercase letters, "
                                        "digits or '-', beginning and ending with a letter or "
                                        "digit)"},
                "mount": {"type": "string", "pattern": IMAGE_PATH_PATTERN},
                "read_only": {"type": "boolean"},
            },
        },
    }


_NAME_RULE = ("1 to 63 characters: lowercase letters, digits, '.', '_' or '-', starting and "
              "ending with a letter or digit")
_DEBIAN_NAME = r"^[a-z][a-z0-9-]*$"
# What a value that does not match a pattern is told, in words: a regular
# expression is no message for a user. Every pattern of the schema has one
# (here or its own x-message); tests/test_spec.py checks none is missing.
PATTERN_MESSAGES: dict[str, str] = {
    NAME_PATTERN: f"is not a valid name ({_NAME_RULE})",
    TAG_PATTERN: ("is not a valid tag (1 to 128 letters, digits, '.', '_' or '-', not "
                  "starting with '.' or '-')"),
    REFERENCE_PATTERN: ("is neither an image of this spec nor an image reference (letters, "
                        "digits, '.', '_', '/', ':', '@', '-')"),
    MODULE_PATTERN: ("is not a valid module name (1 to 63 letters, digits, '.', '_' or '-', "
                     "starting with a letter or digit)"),
    PACKAGE_PATTERN: ("is not a valid package name (letters, digits and '+', '.', '_', ':', "
                      "'=', '~', '*', '-', starting with a letter or digit)"),
    ENV_NAME_PATTERN: ("is not a valid variable name (letters, digits and '_', not starting "
                       "with a digit)"),
    LABEL_NAME_PATTERN: ("is not a valid label key (letters, digits, '.', '_', '/' or '-', "
                         "starting with a letter or digit)"),
    IMAGE_PATH_PATTERN: ("must be an absolute path (starting with '/', without '..', quotes, "
                         "backslashes or control characters)"),
    HOST_PATTERN: ("is not a valid host name (DNS labels of lowercase letters, digits and "
                   "'-', joined by '.')"),
    IP_PATTERN: "is not an IPv4 or IPv6 address",
    _DEBIAN_NAME: "is not a valid Debian name (lowercase letters, digits and '-')",
    r"^[a-z0-9][a-z0-9+.-]*$": ("is not a valid Debian package name (lowercase letters, "
                                "digits, '+', '.' and '-')"),
    r"^(https?|file)://\S+$": "is not an http://, https:// or file:// URL",
}


def _explain_patterns(schema: Any) -> None:
    """Give every `pattern` without its own `x-message` the one from PATTERN_MESSAGES."""
    if isinstance(schema, dict):
        if "pattern" in schema and "x-message" not in schema:
            message = PATTERN_MESSAGES.get(schema["pattern"])
            if message is not None:
                schema["x-message"] = message
        for value in schema.values():
            _explain_patterns(value)
    elif isinstance(schema, list):
        for value in schema:
            _explain_patterns(value)


def build_schema() -> dict[str, Any]:
    schema = _build_schema()
    _explain_patterns(schema)
    return schema


SCHEMA = build_schema()

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}
_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false"}


def _describe(value: Any) -> str:
    for name in ("boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return _TYPE_WORDS[name]
    return "null" if value is None else type(value).__name__


def _ecma(pattern: str) -> str:
    """JSON Schema's `$` ends the string; Python's also matches before a final newline."""
    return pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern



class Validator:
    """Checks a located YAML document against SCHEMA; raises `SpecError`."""

    def __init__(self, file: str, root: dict[str, Any] | None = None) -> None:
        self.file = file
        self.root = SCHEMA if root is None else root  # what `$ref`s point into
        self.locations: dict[str, Mark] = {}

    def fail(self, message: str, path: str, mark: Mark | None) -> SpecError:
        return SpecError(message, file=self.file, line=mark.line if mark else 0,
                         column=mark.column if mark else 0, field=path or "(top level)")

    def validate(self, value: Any, schema: dict[str, Any] | None = None, path: str = "",
                 mark: Mark | None = None) -> None:
        if schema is None:
            schema = self.root
        if mark is None and hasattr(value, "mark"):
            mark = value.mark
        if "$ref" in schema:
            schema = self.root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
        self.locations[path] = mark or Mark(1, 1)
        types = schema.get("type")
        if types is not None:
            names = types if isinstance(types, list) else [types]
            if not any(_TYPES[t](value) for t in names):
                wanted = " or ".join(_TYPE_WORDS[t] for t in names)
                hint = ""
                if "string" in names and _TYPES["number"](value):
                    hint = f'; quote it: "{value}"'
                raise self.fail(f"expected {wanted}, got {_describe(value)}{hint}", path, mark)
        if "enum" in schema and value not in schema["enum"]:
            choices = ", ".join(str(c) for c in schema["enum"])
            extra = did_you_mean(value, schema["enum"]) if isinstance(value, str) else ""
            raise self.fail(f"{value!r} is not one of: {choices}{extra}", path, mark)
        if isinstance(value, str):
            self._string(value, schema, path, mark)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                raise self.fail(f"{value} is below the minimum {schema['minimum']}", path, mark)
            if "maximum" in schema and value > schema["maximum"]:
                raise self.fail(f"{value} is above the maximum {schema['maximum']}", path, mark)
        elif isinstance(value, list):
            self._array(value, schema, path, mark)
        elif isinstance(value, dict):
            self._object(value, schema, path, mark)

    def _string(self, value: str, schema: dict[str, Any], path: str, mark: Mark | None) -> None:
        if len(value) < schema.get("minLength", 0):
            raise self.fail("must not be empty", path, mark)
        for refused, why in schema.get("x-reject", ()):
            if re.search(refused, value):
                raise self.fail(why, path, mark)  # the value is not shown: it may be a secret
        pattern = schema.get("pattern")
        if pattern and not re.search(_ecma(pattern), value):
            why = schema.get("x-message", f"is not allowed here (must match {pattern})")
            raise self.fail(f"{value!r} {why}", path, mark)

    def _array(self, value: list[Any], schema: dict[str, Any], path: str,
               mark: Mark | None) -> None:
        if len(value) < schema.get("minItems", 0):
            raise self.fail(f"needs at least {schema['minItems']} item(s)", path, mark)
        items = schema.get("items")
        if items is None:
            return
        marks = value.item_marks if isinstance(value, LocatedList) else [mark] * len(value)
        for index, item in enumerate(value):
            self.validate(item, items, f"{path}[{index}]", marks[index])

    def _object(self, value: dict[str, Any], schema: dict[str, Any], path: str,
                mark: Mark | None) -> None:
        props: dict[str, Any] = schema.get("properties", {})
        key_marks = value.key_marks if isinstance(value, Located) else {}
        value_marks = value.value_marks if isinstance(value, Located) else {}
        prefix = f"{path}." if path else ""
        for key in schema.get("required", []):
            if key not in value:
                self._misspelt(key, value, props, prefix, key_marks)
                raise self.fail(f"missing required key '{key}'", path, mark)
        count = len(value)
        if count < schema.get("minProperties", 0):
            raise self.fail("must not be empty" if count == 0 else "too few keys", path, mark)
        if count > schema.get("maxProperties", count):
            keys = ", ".join(props)
            raise self.fail(f"give exactly one of: {keys}", path, mark)
        names = schema.get("propertyNames")
        extra = schema.get("additionalProperties", True)
        refused: dict[str, str] = schema.get("x-refused", {})
        for key, item in value.items():
            where = f"{prefix}{key}"
            if key in refused:
                raise self.fail(f"'{key}' {refused[key]}", where, key_marks.get(key))
            if names is not None:
                try:
                    self._string(key, names, where, key_marks.get(key))
                except SpecError:
                    why = names.get("x-message", f"is not a valid name (allowed: "
                                                 f"{names['pattern']})")
                    raise self.fail(f"{key!r} {why}", where, key_marks.get(key)) from None
            if key in props:
                self.validate(item, props[key], where, value_marks.get(key))
            elif extra is False:
                raise self.fail(f"unknown key '{key}'{did_you_mean(key, list(props))}",
                                where, key_marks.get(key))
            elif isinstance(extra, dict):
                self.validate(item, extra, where, value_marks.get(key))

    def _misspelt(self, wanted: str, value: dict[str, Any], props: dict[str, Any],
                  prefix: str, key_marks: dict[str, Mark]) -> None:
        """`image:` for `images:` is a typo to point at, not a missing key."""
        for key in value:
            if key not in props and did_you_mean(key, [wanted]):
                raise self.fail(f"unknown key '{key}' (did you mean '{wanted}'?)",
                                f"{prefix}{key}", key_marks.get(key))


def schema_json() -> str:
    return json.dumps(SCHEMA, indent=2, sort_keys=True) + "\n"

