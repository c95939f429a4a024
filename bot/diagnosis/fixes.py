"""Fix commands: the one place that turns a cause into commands a person pastes.

Every command is namespaced, aimed at the parent workload (never a ReplicaSet or a pod that a
controller will replace), and every argument goes through `shlex.quote`. Values the bot cannot
know are `<placeholders>`, and the title names them.

Quoting stops the shell, not the tool: a secret name `--kubeconfig=/tmp/x` from a kubelet
warning, quoted, is still an option to kubectl. So (1) a positional argument that could be read
as an option moves behind `--`, the end-of-options marker (see `_cmd`), and
(2) every Kubernetes name is checked against the apiserver's rules before it is used at all
(`_checked`): a name the apiserver would refuse becomes a `<placeholder>` and the fix's title
says why — it is never a live argument. Option values (`-n NS`, `--docker-server=HOST`) are
either such checked names, or host/repository parts of a parsed image reference, whose grammar
cannot start with `-`.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bot.diagnosis import names
from bot.diagnosis.causes import CAUSES, Cause, Finding
from bot.diagnosis.cloud import CloudRegistry, cloud_registry
from bot.diagnosis.facts import RESTARTABLE_KINDS, WorkloadRef
from bot.diagnosis.imageref import ImageRef, try_parse_image
from bot.diagnosis.model import Fix

DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
DEFAULT_SECRET_NAME = "regcred"


@dataclass(frozen=True)
class FixContext:
    """What the fix builders need to know about one failing container."""

    namespace: str
    workload: WorkloadRef
    container: str
    image: str
    ref: ImageRef | None
    init_container: bool = False
    service_account: str = "default"
    service_account_pull_secrets: tuple[str, ...] = ()
    node: str | None = None
    findings: frozenset[Finding] = field(default_factory=frozenset)
    missing_secret: str | None = None
    wrong_registry_secret: str | None = None
    unreferenced_secret: str | None = None
    plain_http: bool = False
    repository_uncertain: bool = False
    #: the effective imagePullPolicy of the container
    pull_policy: str = "IfNotPresent"
    #: the pod already uses a pull secret for the image's registry
    has_registry_secret: bool = False
    suggested_image: str | None = None
    #: digest of the working reference (the suggestion, or the current image when it pulls)
    pin_digest: str | None = None
    #: the other readings of the kubelet's words (`ContainerDiagnosis.alternatives`)
    alternatives: tuple[Cause, ...] = ()
    #: the node's container runtime ("containerd", "cri-o", "docker"); None when unknown
    runtime: str | None = None
    #: the image the pod's template asks for, when admission rewrote it (`image_rewritten`)
    template_image: str | None = None
    #: `configuration/webhook` of the mutating webhooks that match the pod's namespace
    rewriting_webhooks: tuple[str, ...] = ()

    @property
    def registry(self) -> str:
        return self.ref.registry if self.ref else "<registry>"

    @property
    def docker_server(self) -> str:
        """The --docker-server value kubectl needs: Docker Hub wants its legacy v1 URL."""
        if self.ref is None:
            return "<registry>"
        return DOCKER_HUB_SERVER if self.ref.is_docker_hub else self.ref.registry


class _Quoted(str):
    """A command-line word that is already shell-quoted."""

    __slots__ = ()


def _flag(name: str, value: str) -> _Quoted:
    """`--name=value` with only the value quoted: `--docker-password='<token>'` reads better
    than quoting the whole word, and is just as safe to paste."""
    return _Quoted(f"--{name}={shlex.quote(value)}")


def _cmd(*words: str, args: Sequence[str] = (), tail: Sequence[str] = ()) -> str:
    """One command line: `words` are the program, its subcommands and leading options (written
    here), `args` its positional arguments, which carry cluster text, and `tail` options that
    read best after them (`kubectl set image deployment/web web=nginx:1.25 -n shop`, the shape
    every kubectl page shows and people search for).

    Quoting stops the shell, not the tool: an argument that starts with `-` is an option to it.
    So when any positional could be read as one, the line becomes `words tail -- args`: `--`
    ends option parsing in every tool a positional from the cluster is given to — cobra's pflag
    (kubectl, docker, docker buildx, crane), Go's flag package (crictl, through urfave/cli)
    and POSIX utilities (grep). Otherwise the positionals stand where people expect them; no
    word that does not start with `-` is ever parsed as an option, so both shapes are equally
    safe. nslookup, openssl and gcloud take no positionals here: they only receive registry
    hosts and repository paths of parsed image references, whose grammar cannot start with `-`.

    One exception, `_create`: `kubectl create <kind> NAME` takes NAME only *before* `--`
    (NameFromCommandArgs counts the arguments before the dash; what follows is a container
    command for `create job`), so there NAME is passed as a word. It is always a name
    `_checked` admitted (DNS-1123 cannot start with `-`) or one of this module's constants.
    """

    def line(parts: Iterable[str]) -> str:
        return " ".join(w if isinstance(w, _Quoted) else shlex.quote(w) for w in parts)

    if any(a.startswith("-") for a in args):
        return f"{line([*words, *tail])} -- {line(args)}"
    return line([*words, *args, *tail])


def _create(kind: str, name: str, *options: str) -> str:
    """`kubectl create KIND NAME OPTIONS…` (see `_cmd` for why NAME has no `--` here)."""
    return _cmd("kubectl", "create", *kind.split(), name, *options)


def _ns(ctx: FixContext) -> tuple[str, str]:
    return ("-n", ctx.namespace)


# -- building blocks ------------------------------------------------------------------------


def set_image(ctx: FixContext, new_image: str, title: str) -> Fix:
    """`kubectl set image` on the parent workload; a bare Job's template is immutable."""
    if ctx.workload.kind == "Job":
        return Fix(
            f"{title} — a Job's pod template cannot change: delete it and re-create it from "
            "your manifest with the corrected image",
            _cmd("kubectl", "delete", args=[ctx.workload.kubectl_ref], tail=_ns(ctx)),
        )
    return Fix(
        title,
        _cmd("kubectl", "set", "image",
             args=[ctx.workload.kubectl_ref, f"{ctx.container}={new_image}"], tail=_ns(ctx)),
    )


def remediation_command(action: str, namespace: str, kind: str, name: str,
                        container: str = "", image: str = "") -> str:
    """The kubectl line a person runs instead of an approved remediation ("rollout_restart",
    "set_image", or "retry": a rollout restart, or deleting a bare pod), e.g. when the install
    is read-only: the same command the bot's PATCH (or DELETE) imitates."""
    ref = f"{kind.lower()}/{name}"
    if action == "retry" and kind == "Pod":  # a bare pod: nothing but deleting it resets it
        return _cmd("kubectl", "delete", "pod", args=[name], tail=("-n", namespace))
    if action == "set_image":
        return _cmd("kubectl", "set", "image", args=[ref, f"{container}={image}"],
                    tail=("-n", namespace))
    return _cmd("kubectl", "rollout", "restart", args=[ref], tail=("-n", namespace))


def restart_workload(ctx: FixContext) -> Fix:
    """Clear the back-off timer at once instead of waiting up to 5 minutes."""
    kind = ctx.workload.kind
    if kind in RESTARTABLE_KINDS:
        return Fix(
            "After fixing the cause, restart so the pods retry now instead of after the back-off",
            _cmd("kubectl", "rollout", "restart", args=[ctx.workload.kubectl_ref], tail=_ns(ctx)),
        )
    if kind == "CronJob":
        return Fix(
            "After fixing the cause, run the CronJob once now instead of waiting for its schedule",
            _create("job", f"{ctx.workload.name}-manual", "--from", ctx.workload.kubectl_ref,
                    *_ns(ctx)),
        )
    return Fix(
        f"After fixing the cause, delete the {kind} so it is re-created and pulls again "
        "(re-apply its manifest if nothing re-creates it)",
        _cmd("kubectl", "delete", args=[ctx.workload.kubectl_ref], tail=_ns(ctx)),
    )


def create_pull_secret(ctx: FixContext, name: str, title: str | None = None,
                       placeholder: str = "<token>") -> Fix:
    server = ctx.docker_server
    return Fix(
        title
        or f"Create pull secret {name} for {ctx.registry} in namespace {ctx.namespace} "
        "(fill in <username> and <token>; secrets are namespace-scoped)",
        _create("secret docker-registry", name,
                _flag("docker-server", server), _flag("docker-username", "<username>"),
                _flag("docker-password", placeholder), *_ns(ctx)),
    )


def attach_secret_to_service_account(ctx: FixContext, name: str) -> Fix:
    """Patch the service account, keeping the secrets it already lists.

    imagePullSecrets on a ServiceAccount has no merge key, so a patch replaces the whole list:
    the existing names are written back alongside the new one.
    """
    names = [*ctx.service_account_pull_secrets]
    if name not in names:
        names.append(name)
    patch = json.dumps({"imagePullSecrets": [{"name": n} for n in names]})
    return Fix(
        f"Attach {name} to service account {ctx.service_account} (new pods inherit it; "
        "existing pods need a restart)",
        _cmd("kubectl", "patch", "serviceaccount", args=[ctx.service_account],
             tail=["-p", patch, *_ns(ctx)]),
    )


def show_secret_registries(ctx: FixContext, name: str) -> Fix:
    """Show the registry keys of a pull secret without printing its password."""
    return Fix(
        f"Check which registries {name} holds credentials for (prints host names only)",
        _cmd("kubectl", "get", "secret", args=[name],
             tail=[*_ns(ctx), _Quoted("--output='jsonpath={.data.\\.dockerconfigjson}'")])
        + " | base64 --decode | jq '.auths | keys'",
    )


def hosts_toml(host: str, body: str, title: str) -> Fix:
    path = f"/etc/containerd/certs.d/{host}/hosts.toml"
    return Fix(
        title + f" (on every node; containerd reloads {path} without a restart)",
        f"sudo mkdir -p /etc/containerd/certs.d/{shlex.quote(host)} && "
        f"sudo tee {shlex.quote(path)} <<'EOF'\n{body}\nEOF",
    )


def node_pull_check(ctx: FixContext, title: str = "Pull the image on the node to see the "
                    "runtime's own error") -> Fix:
    node = ctx.node or "<node>"
    return Fix(
        f"{title} (ssh to {node} first)",
        _cmd("sudo", "crictl", "--debug", "pull", args=[ctx.image]),
    )


def list_tags(ctx: FixContext) -> Fix:
    if ctx.ref is not None and ctx.ref.is_docker_hub:
        return Fix(
            "List the tags that exist on Docker Hub",
            f"curl -s https://registry.hub.docker.com/v2/repositories/{ctx.ref.repository}/tags/"
            " | jq '.results[].name'",
        )
    return Fix("List the tags that exist (crane, from go-containerregistry)",
               _cmd("crane", "ls", args=[ctx.ref.name if ctx.ref else ctx.image]))


def _replace_image_title(ctx: FixContext, what: str) -> str:
    return f"Point {ctx.container} on {ctx.workload.kubectl_ref} at {what}"


# -- per cause ------------------------------------------------------------------------------


def _tag_not_found(ctx: FixContext) -> list[Fix]:
    fixes: list[Fix] = []
    if ctx.suggested_image:
        fixes.append(set_image(ctx, ctx.suggested_image,
                               _replace_image_title(ctx, f"{ctx.suggested_image}, which exists")))
    fixes.append(list_tags(ctx))
    if ctx.repository_uncertain:
        fixes.append(Fix("Check the repository path too (a missing repository also reads "
                         "'not found'): pull it from a workstation",
                         _cmd("docker", "pull", args=[ctx.image])))
    if not ctx.suggested_image:
        base = ctx.ref.familiar_repository if ctx.ref else "<image>"
        fixes.append(set_image(ctx, f"{base}:<tag>",
                               _replace_image_title(ctx, "a tag that exists (replace <tag>)")))
    if not ctx.pin_digest:
        base = ctx.ref.familiar_repository if ctx.ref else "<image>"
        fixes.append(set_image(ctx, f"{base}@sha256:<digest>",
                               "Optional: pin by digest so a re-tag or cleanup cannot break it "
                               "again (replace <digest>)"))
    return fixes


def _repository_not_found(ctx: FixContext) -> list[Fix]:
    fixes: list[Fix] = []
    if ctx.suggested_image:
        fixes.append(set_image(ctx, ctx.suggested_image,
                               _replace_image_title(ctx, f"{ctx.suggested_image}, which exists")))
    fixes.append(Fix("Check the repository path from a workstation",
                     _cmd("docker", "pull", args=[ctx.image])))
    if not ctx.suggested_image:
        tag = ctx.ref.effective_tag if ctx.ref else "<tag>"
        fixes.append(set_image(ctx, f"{ctx.registry}/<repository>:{tag}",
                               _replace_image_title(ctx, "the right repository (replace "
                                                    "<repository>)")))
    return fixes


def _credentials(ctx: FixContext) -> list[Fix]:
    """401 and ambiguous denials: make a working secret reach the pod."""
    fixes: list[Fix] = []
    if ctx.missing_secret:
        fixes.append(create_pull_secret(
            ctx, ctx.missing_secret,
            f"Create the missing secret {ctx.missing_secret} in namespace {ctx.namespace} — the "
            "pod references it but it does not exist here (secrets are namespace-scoped); fill "
            "in <username> and <token>"))
    elif ctx.wrong_registry_secret:
        name = ctx.wrong_registry_secret
        fixes.append(show_secret_registries(ctx, name))
        fixes.append(Fix(
            f"Re-create {name} with {ctx.docker_server} as the server (fill in <username> and "
            "<token>)",
            _create("secret docker-registry", name,
                    _flag("docker-server", ctx.docker_server),
                    _flag("docker-username", "<username>"), _flag("docker-password", "<token>"),
                    *_ns(ctx), "--dry-run=client", "-o", "yaml")
            + " | kubectl apply -f -",
        ))
    elif ctx.unreferenced_secret:
        fixes.append(attach_secret_to_service_account(ctx, ctx.unreferenced_secret))
    else:
        fixes.append(create_pull_secret(ctx, DEFAULT_SECRET_NAME))
        fixes.append(attach_secret_to_service_account(ctx, DEFAULT_SECRET_NAME))
    fixes.extend(_cloud_fixes(ctx))
    fixes.append(Fix(
        "Test the credentials from the node (ssh to it; fill in <username> and <token>)",
        _cmd("sudo", "crictl", "pull", "--creds", "<username>:<token>", args=[ctx.image]),
    ))
    fixes.append(restart_workload(ctx))
    return fixes


def _cloud_fixes(ctx: FixContext) -> list[Fix]:
    cloud = cloud_registry(ctx.registry)
    if cloud is None:
        return []
    fixes: list[Fix] = []
    if cloud.product == "ECR":
        region = cloud.region or "<region>"
        name = ctx.wrong_registry_secret or ctx.missing_secret or DEFAULT_SECRET_NAME
        fixes.append(Fix(
            f"Stop-gap: refresh {name} with a new 12-hour ECR token (needs AWS credentials "
            "where you run it)",
            _create("secret docker-registry", name,
                    _flag("docker-server", ctx.registry), _flag("docker-username", "AWS"),
                    _Quoted('--docker-password="$(aws ecr get-login-password --region '
                            f'{shlex.quote(region)})"'), *_ns(ctx), "--dry-run=client",
                    "-o", "yaml")
            + " | kubectl apply -f -",
        ))
    fixes.append(credential_provider_config(cloud))
    return fixes


def credential_provider_config(cloud: CloudRegistry) -> Fix:
    """A kubelet CredentialProviderConfig for the cloud's plugin (GA since Kubernetes 1.26)."""
    config = (
        "apiVersion: kubelet.config.k8s.io/v1\n"
        "kind: CredentialProviderConfig\n"
        "providers:\n"
        f"  - name: {cloud.plugin_binary}\n"
        f"    matchImages: [{', '.join(repr(m) for m in cloud.match_images)}]\n"
        f"    defaultCacheDuration: {cloud.cache_duration}\n"
        "    apiVersion: credentialprovider.kubelet.k8s.io/v1"
    )
    return Fix(
        f"Durable fix: let the kubelet fetch fresh {cloud.product} credentials at pull time with "
        f"{cloud.credential_provider} instead of a static secret (on every node; then start "
        "the kubelet with --image-credential-provider-config=/etc/kubernetes/"
        "credential-provider.yaml --image-credential-provider-bin-dir=<plugin-dir>)",
        f"sudo tee /etc/kubernetes/credential-provider.yaml <<'EOF'\n{config}\nEOF",
    )


def _forbidden(ctx: FixContext) -> list[Fix]:
    fixes: list[Fix] = []
    cloud = cloud_registry(ctx.registry)
    repo = ctx.ref.repository if ctx.ref else "<repository>"
    if cloud is not None and cloud.product == "Artifact Registry":
        parts = repo.split("/")
        project = parts[0] if parts else "<project>"
        repository = parts[1] if len(parts) > 1 else "<repository>"
        fixes.append(Fix(
            "Grant the pulling identity read access to the Artifact Registry repository "
            "(replace <member>)",
            _cmd("gcloud", "artifacts", "repositories", "add-iam-policy-binding", repository,
                 _flag("project", project), _flag("location", cloud.region or '<location>'),
                 _flag("member", "<member>"), _flag("role", "roles/artifactregistry.reader")),
        ))
    else:
        fixes.append(Fix(
            f"Grant the account in the pull secret pull (read) permission on {repo} in "
            f"{ctx.registry}'s access settings, or use credentials that have it",
            _cmd("sudo", "crictl", "pull", "--creds", "<username>:<token>", args=[ctx.image]),
        ))
    fixes.extend(_cloud_fixes(ctx))
    fixes.append(restart_workload(ctx))
    return fixes


def _rate_limited(ctx: FixContext) -> list[Fix]:
    hub = ctx.ref is not None and ctx.ref.is_docker_hub
    fixes = [_quota_check(ctx) if hub else Fix(
        f"See how long {ctx.registry} asks you to wait (Retry-After) and its rate-limit headers",
        _cmd("curl", "-sI", f"https://{ctx.registry}/v2/"),
    )]
    if hub and not ctx.has_registry_secret:
        fixes += [
            create_pull_secret(
                ctx, "dockerhub-creds",
                "Authenticate pulls: a free Docker Hub account doubles the quota and decouples "
                "it from the NAT IP (fill in <username> and <personal-access-token>)",
                placeholder="<personal-access-token>",
            ),
            attach_secret_to_service_account(ctx, "dockerhub-creds"),
        ]
    upstream = "https://registry-1.docker.io" if hub else f"https://{ctx.registry}"
    host_dir = "docker.io" if hub else ctx.registry
    fixes.append(hosts_toml(
        host_dir,
        f'server = "{upstream}"\n\n'
        '[host."https://<registry-mirror>"]\n  capabilities = ["pull", "resolve"]',
        f"Pull through a cache: point {host_dir} at your mirror (replace <registry-mirror>)",
    ))
    if ctx.pull_policy == "Always":
        fixes.append(Fix(
            "Avoid needless re-pulls of a stable tag: set imagePullPolicy IfNotPresent",
            _policy_patch(ctx, "IfNotPresent"),
        ))
    return fixes


def dockerhub_quota_fixes(authenticated: bool) -> tuple[Fix, ...]:
    """The field guide's fixes for a Docker Hub quota running low, for the quota watch's
    warning (bot/routines/quota.py): it is about a whole IP or account, not one workload, so
    the namespace is a placeholder. Anonymous pulls (an IP's quota): authenticate them (a
    free account doubles the quota and decouples it from the NAT IP) and pull through a
    cache. An account's quota: pull through a cache (or a paid plan, which has no limit)."""
    hub = FixContext(namespace="<namespace>", workload=WorkloadRef("Deployment", "<workload>"),
                     container="", image="docker.io/library/nginx",
                     ref=try_parse_image("docker.io/library/nginx"))
    fixes: list[Fix] = []
    if not authenticated:
        fixes += [
            create_pull_secret(
                hub, "dockerhub-creds",
                "Authenticate pulls in each namespace that pulls from Docker Hub (fill in "
                "<namespace>, <username> and <personal-access-token>): a free account allows "
                "200 pulls per 6 hours, counted per account instead of per NAT IP",
                placeholder="<personal-access-token>"),
            replace(attach_secret_to_service_account(hub, "dockerhub-creds"),
                    title="Attach it to the namespace's default service account (keep any "
                          "secrets it already lists in the patch; existing pods need a "
                          "restart)"),
        ]
    fixes.append(hosts_toml(
        "docker.io",
        'server = "https://registry-1.docker.io"\n\n'
        '[host."https://<registry-mirror>"]\n  capabilities = ["pull", "resolve"]',
        "Pull through a cache (Harbor, Nexus or registry:2 as a proxy): point docker.io at "
        "your mirror (replace <registry-mirror>)"))
    return tuple(fixes)


def _quota_check(ctx: FixContext) -> Fix:
    """Docker's documented check: a token, then a manifest HEAD (HEAD uses no quota)."""
    repo = ctx.ref.repository if ctx.ref else "library/nginx"
    tag = ctx.ref.effective_tag if ctx.ref else "latest"
    login = "-u '<username>:<token>' " if ctx.has_registry_secret else ""
    whose = ("the account the pod already pulls with (fill in <username> and <token>): a free "
             "plan allows 200 pulls per 6 hours" if ctx.has_registry_secret else
             "the nodes' outbound IP — run it from a node or anything behind the same NAT")
    return Fix(
        f"Check the remaining Docker Hub quota of {whose}; HEAD requests use no quota",
        f'TOKEN=$(curl -s {login}"https://auth.docker.io/token?service=registry.docker.io&scope='
        f'repository:{repo}:pull" | jq -r .token) && curl -sI -H "Authorization: Bearer '
        f'$TOKEN" https://registry-1.docker.io/v2/{repo}/manifests/{tag} | grep -i ratelimit',
    )


def _policy_patch(ctx: FixContext, policy: str) -> str:
    key = "initContainers" if ctx.init_container else "containers"
    patch: dict[str, Any] = {key: [{"name": ctx.container, "imagePullPolicy": policy}]}
    # wrap the pod spec in the workload's template path, innermost first
    wrappers = {"Pod": ("spec",), "CronJob": ("spec", "template", "spec", "jobTemplate", "spec")}
    for level in wrappers.get(ctx.workload.kind, ("spec", "template", "spec")):
        patch = {level: patch}
    return _cmd("kubectl", "patch", args=[ctx.workload.kubectl_ref],
                tail=[*_ns(ctx), "-p", json.dumps(patch)])


def _dns(ctx: FixContext) -> list[Fix]:
    host = ctx.registry
    fixes = []
    if ctx.suggested_image:
        fixes.append(set_image(ctx, ctx.suggested_image, _replace_image_title(
            ctx, f"{ctx.suggested_image} — the registry host looks misspelled")))
    fixes.append(Fix(f"Check the host name resolves from the node (ssh to "
                     f"{ctx.node or '<node>'})", _cmd("nslookup", host)))
    if not ctx.suggested_image:
        fixes.append(set_image(
            ctx, f"<registry-host>/{ctx.ref.repository}:{ctx.ref.effective_tag}"
            if ctx.ref else "<image>",
            _replace_image_title(ctx, "the correct registry host if it is misspelled "
                                 "(replace <registry-host>)")))
        fixes.append(restart_workload(ctx))
    return fixes


def _network(ctx: FixContext) -> list[Fix]:
    # Docker Hub's API lives on registry-1.docker.io, not on docker.io itself
    host = "registry-1.docker.io" if ctx.ref is not None and ctx.ref.is_docker_hub \
        else ctx.registry
    return [
        Fix(f"Test TCP + TLS from the node (ssh to {ctx.node or '<node>'}); 200 or 401 means "
            "the registry is reachable",
            _cmd("curl", "-v", f"https://{host}/v2/")),
        Fix("Behind a corporate proxy: give containerd the proxy settings "
            "(systemctl edit containerd, then restart it; replace <proxy>)",
            "[Service]\nEnvironment=\"HTTPS_PROXY=http://<proxy>:3128\"\n"
            "Environment=\"NO_PROXY=10.0.0.0/8,192.168.0.0/16,.cluster.local\""),
        restart_workload(ctx),
    ]


def _tls(ctx: FixContext) -> list[Fix]:
    host = ctx.registry
    if ctx.plain_http:
        return [
            hosts_toml(host, f'server = "http://{host}"\n\n[host."http://{host}"]\n'
                       '  capabilities = ["pull", "resolve"]',
                       f"{host} speaks plain HTTP: tell containerd to use http for it"),
            restart_workload(ctx),
        ]
    ca_path = f"/etc/containerd/certs.d/{host}/ca.crt"
    return [
        Fix("Inspect the certificate the registry presents (from the node, "
            f"{ctx.node or '<node>'})",
            f"openssl s_client -connect {shlex.quote(_with_port(host))} -servername "
            f"{shlex.quote(host.split(':')[0])} </dev/null | openssl x509 -noout -subject "
            "-issuer -dates"),
        Fix(f"Copy the registry's CA certificate to {ca_path} on every node (replace <ca.crt>)",
            _cmd("sudo", "cp", "<ca.crt>", ca_path)),
        hosts_toml(host, f'[host."https://{host}"]\n  capabilities = ["pull", "resolve"]\n'
                   f'  ca = "{ca_path}"', f"Trust that CA for {host} only"),
        restart_workload(ctx),
    ]


def _with_port(host: str) -> str:
    return host if ":" in host else f"{host}:443"


def _never_pull(ctx: FixContext) -> list[Fix]:
    return [
        Fix("Let the kubelet pull the image: set imagePullPolicy IfNotPresent",
            _policy_patch(ctx, "IfNotPresent")),
        Fix(f"Or pre-load it on the node and check it is there (ssh to {ctx.node or '<node>'})",
            "sudo crictl images | "
            + _cmd("grep", args=[ctx.ref.familiar_repository if ctx.ref else ctx.image])),
    ]


def _invalid_name(ctx: FixContext) -> list[Fix]:
    candidate = ctx.image.strip().lower()
    for scheme in ("https://", "http://"):
        candidate = candidate.removeprefix(scheme)
    if try_parse_image(candidate) is not None and candidate != ctx.image:
        return [set_image(ctx, candidate, _replace_image_title(ctx, f"the valid reference "
                                                              f"{candidate}"))]
    return [set_image(ctx, "<image>", _replace_image_title(ctx, "a valid image reference "
                                                          "(lower-case repository; replace "
                                                          "<image>)"))]


def _disk_full(ctx: FixContext) -> list[Fix]:
    node = ctx.node or "<node>"
    return [
        Fix("Check the node's disk conditions", _cmd("kubectl", "describe", "node", args=[node])
            + " | grep -A5 Conditions"),
        Fix(f"Check space where images are unpacked (ssh to {node})",
            _cmd("df", "-h", "/var/lib/containerd")),
        Fix(f"Prune unused images on {node}", _cmd("sudo", "crictl", "rmi", "--prune")),
        restart_workload(ctx),
    ]


def _platform(ctx: FixContext) -> list[Fix]:
    node = ctx.node or "<node>"
    return [
        Fix("See which platforms the image provides",
            _cmd("docker", "buildx", "imagetools", "inspect", args=[ctx.image])),
        Fix(f"See the node's OS/architecture ({node})",
            _cmd("kubectl", "get", "node", args=[node], tail=[
                 "-o",
                 "jsonpath={.status.nodeInfo.operatingSystem}/{.status.nodeInfo.architecture}"])),
        Fix("Build and push a multi-arch image (or add a kubernetes.io/arch nodeSelector)",
            _cmd("docker", "buildx", "build", "--platform", "linux/amd64,linux/arm64",
                 _flag("tag", ctx.image), "--push", ".")),
    ]


def _manifest_url(ctx: FixContext) -> str:
    """The registry API URL of the image's manifest (Docker Hub's API host for Hub images)."""
    if ctx.ref is None:
        return "https://<registry>/v2/<repository>/manifests/<tag>"
    host = "registry-1.docker.io" if ctx.ref.is_docker_hub else ctx.ref.registry
    reference = ctx.ref.digest or ctx.ref.effective_tag
    return f"https://{host}/v2/{ctx.ref.repository}/manifests/{reference}"


def _image_incomplete(ctx: FixContext) -> list[Fix]:
    base = ctx.ref.familiar_repository if ctx.ref else "<image>"
    return [
        Fix("List what the image's index names, per platform (crane, from "
            "go-containerregistry): the digest the pull could not fetch is one of them",
            _cmd("crane", "manifest", args=[ctx.image]) + " | jq '.manifests[]? | "
            "{digest, platform}'"),
        Fix("Re-push the image from its build (all platforms), so every manifest and layer it "
            "lists exists again; then check the registry's cleanup policy does not delete "
            "untagged manifests an index still uses",
            _cmd("docker", "buildx", "imagetools", "create", _flag("tag", ctx.image),
                 args=[f"{base}@sha256:<digest-of-a-complete-image>"])),
        set_image(ctx, f"{base}@sha256:<digest>",
                  _replace_image_title(ctx, "a digest whose parts all exist (replace "
                                       "<digest>)")),
        restart_workload(ctx),
    ]


def _upstream(ctx: FixContext) -> str:
    """The registry's API host (Docker Hub's API lives on registry-1.docker.io)."""
    return "registry-1.docker.io" if ctx.ref is not None and ctx.ref.is_docker_hub \
        else ctx.registry


def _ip_blocked(ctx: FixContext) -> list[Fix]:
    node = ctx.node or "<node>"
    return [
        Fix(f"Ask for the manifest from the node (ssh to {node}), then from another network: "
            "403 from the node only is an address block, 403 from both is permission",
            _cmd("curl", "-sI", _manifest_url(ctx))),
        Fix("See the node's outbound address (the one the registry refuses)",
            "curl -s https://checkip.amazonaws.com"),
        hosts_toml(
            "docker.io" if ctx.ref is not None and ctx.ref.is_docker_hub else ctx.registry,
            f'server = "https://{_upstream(ctx)}"\n\n'
            '[host."https://<registry-mirror>"]\n  capabilities = ["pull", "resolve"]',
            "Pull through a mirror or cache the registry lets through (replace "
            "<registry-mirror>)"),
        restart_workload(ctx),
    ]


def _node_disk_error(ctx: FixContext) -> list[Fix]:
    node = ctx.node or "<node>"
    return [
        Fix(f"Look for the device's I/O errors in the kernel log (ssh to {node})",
            "sudo dmesg --ctime | grep -iE 'i/o error|blk_update_request|ext4-fs error|xfs' "
            "| tail -20"),
        Fix(f"Check the space under the layer store, and of a thin pool or LVM volume under "
            f"it (on {node})",
            _cmd("df", "-h", "/var/lib/containerd") + " && sudo lvs 2>/dev/null"),
        Fix(f"Keep new pods off {node} while its disk is looked at",
            _cmd("kubectl", "cordon", args=[node])),
        restart_workload(ctx),
    ]


def _dns_resolver(ctx: FixContext) -> list[Fix]:
    node = ctx.node or "<node>"
    return [
        Fix(f"See which resolver the node uses, and ask it directly (ssh to {node}; the "
            "runtime uses the node's /etc/resolv.conf, not CoreDNS)",
            "grep nameserver /etc/resolv.conf && resolvectl status 2>/dev/null | head -20"),
        Fix("Ask the node's resolver for the registry host (replace <resolver> with a "
            "nameserver above); a timeout or refusal is the resolver, NXDOMAIN is the name",
            _cmd("nslookup", ctx.registry, "<resolver>")),
        restart_workload(ctx),
    ]


def _kubelet_throttled(ctx: FixContext) -> list[Fix]:
    node = ctx.node or "<node>"
    fixes = [
        Fix(f"See the kubelet's pull limits on {node} (registryPullQPS, default 5 per second; "
            "registryBurst, default 10): the next retry usually gets through",
            f"kubectl get --raw /api/v1/nodes/{shlex.quote(node)}/proxy/configz | jq "
            "'.kubeletconfig | {registryPullQPS, registryBurst}'"),
        Fix("Raise them in the kubelet's configuration (/var/lib/kubelet/config.yaml on each "
            "node, or your node pool's kubelet settings; then sudo systemctl restart kubelet; "
            "0 means no limit)",
            "registryPullQPS: 20\nregistryBurst: 40"),
    ]
    if ctx.pull_policy == "Always":
        fixes.append(Fix("Pull less: a stable tag needs no pull at every start "
                         "(imagePullPolicy IfNotPresent)", _policy_patch(ctx, "IfNotPresent")))
    return fixes


def _unknown(ctx: FixContext) -> list[Fix]:
    return [
        Fix("Read the namespace's pull failures (events expire after about an hour)",
            _cmd("kubectl", "get", "events", *_ns(ctx), "--field-selector", "reason=Failed")),
        node_pull_check(ctx),
    ]


_BUILDERS = {
    Cause.TAG_NOT_FOUND: _tag_not_found,
    Cause.REPOSITORY_NOT_FOUND: _repository_not_found,
    Cause.AUTH_REQUIRED: _credentials,
    Cause.FORBIDDEN: _forbidden,
    Cause.RATE_LIMITED: _rate_limited,
    Cause.DNS_FAILURE: _dns,
    Cause.NETWORK_UNREACHABLE: _network,
    Cause.TLS_UNTRUSTED: _tls,
    Cause.NEVER_PULL: _never_pull,
    Cause.INVALID_IMAGE_NAME: _invalid_name,
    Cause.DISK_FULL: _disk_full,
    Cause.PLATFORM_MISMATCH: _platform,
    Cause.UNKNOWN: _unknown,
    Cause.IMAGE_INCOMPLETE: _image_incomplete,
    Cause.IP_BLOCKED: _ip_blocked,
    Cause.NODE_DISK_ERROR: _node_disk_error,
    Cause.DNS_RESOLVER_UNREACHABLE: _dns_resolver,
    Cause.KUBELET_PULL_THROTTLED: _kubelet_throttled,
}


def build_fixes(cause: Cause, ctx: FixContext) -> tuple[Fix, ...]:
    """The fix steps for `cause`, in the order a person should try them."""
    ctx, refused = _checked(ctx)
    fixes = _finding_fixes_first(cause, ctx)
    fixes.extend(_BUILDERS[cause](ctx))
    fixes.extend(_finding_fixes(cause, ctx))
    fixes.extend(_alternative_fixes(cause, ctx))
    if ctx.pin_digest and CAUSES[cause].kubelet_pulls:
        fixes.append(_pin_by_digest(ctx))
    return tuple(_explain_refused(_dedupe(fixes), refused))


# -- names from the cluster ------------------------------------------------------------------

#: Kinds are CamelCase identifiers (apimachinery: a valid Go type name), Deployment, MyCRD.
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")


@dataclass(frozen=True)
class _Refused:
    placeholder: str
    what: str
    value: str


def _checked(ctx: FixContext) -> tuple[FixContext, list[_Refused]]:
    """`ctx` with every Kubernetes name the apiserver would refuse replaced by a placeholder.

    Pod specs and kubelet messages are not validated where names come from (an offline file,
    `imagePullSecrets` entries, the names inside "Unable to retrieve some image pull secrets
    (…)"), and a name is the one thing commands pass as a live argument.
    """
    refused: list[_Refused] = []

    def check(value: str, valid: bool, placeholder: str, what: str) -> str:
        if valid:
            return value
        refused.append(_Refused(placeholder, what, value))
        return placeholder

    def subdomain(value: str | None, placeholder: str, what: str) -> str | None:
        if value is None:
            return None
        return check(value, names.is_dns1123_subdomain(value), placeholder, what)

    def secret(value: str | None) -> str | None:
        return subdomain(value, "<secret-name>", "pull secret name")

    kind = check(ctx.workload.kind, bool(_KIND.match(ctx.workload.kind)), "<kind>",
                 "workload kind")
    workload = WorkloadRef(kind, check(ctx.workload.name,
                                       names.is_dns1123_subdomain(ctx.workload.name),
                                       "<workload-name>", "workload name"))
    return replace(
        ctx,
        namespace=check(ctx.namespace, names.is_dns1123_label(ctx.namespace), "<namespace>",
                        "namespace"),
        workload=workload,
        container=check(ctx.container, names.is_dns1123_label(ctx.container), "<container>",
                        "container name"),
        service_account=check(ctx.service_account,
                              names.is_dns1123_subdomain(ctx.service_account),
                              "<service-account>", "service account name"),
        service_account_pull_secrets=tuple(
            check(n, names.is_dns1123_subdomain(n), "<listed-secret-name>",
                  "pull secret name listed on the service account")
            for n in ctx.service_account_pull_secrets),
        node=subdomain(ctx.node, "<node>", "node name"),
        missing_secret=secret(ctx.missing_secret),
        wrong_registry_secret=secret(ctx.wrong_registry_secret),
        unreferenced_secret=secret(ctx.unreferenced_secret),
    ), refused


def _explain_refused(fixes: list[Fix], refused: Sequence[_Refused]) -> list[Fix]:
    """Say, in the title of every fix that shows a refused name's placeholder, why."""
    if not refused:
        return fixes
    out = []
    for fix in fixes:
        notes = [f"replace {r.placeholder}: {r.what} {r.value[:60]!r} is not a valid "
                 "Kubernetes name" for r in _unique(refused) if r.placeholder in fix.command]
        out.append(Fix(f"{fix.title} ({'; '.join(notes)})", fix.command) if notes else fix)
    return out


def _unique(refused: Sequence[_Refused]) -> list[_Refused]:
    seen: set[tuple[str, str]] = set()
    out = []
    for r in refused:
        if (r.placeholder, r.value) not in seen:
            seen.add((r.placeholder, r.value))
            out.append(r)
    return out


def _pin_by_digest(ctx: FixContext) -> Fix:
    """Pin the working reference (the suggestion, else the current image) to its digest."""
    working = try_parse_image(ctx.suggested_image) if ctx.suggested_image else ctx.ref
    base = working.familiar_repository if working else "<image>"
    pinned = f"{base}@{ctx.pin_digest}"
    return set_image(ctx, pinned, f"Optional: pin {working.original if working else base} by "
                     "digest so a re-tag or cleanup cannot break it again")


def _finding_fixes_first(cause: Cause, ctx: FixContext) -> list[Fix]:
    """Steps a finding makes more likely to help than the cause's own: they come first."""
    fixes: list[Fix] = []
    if Finding.PROXY_SUSPECTED in ctx.findings:
        fixes.extend(_proxy(ctx))
    return fixes


def _proxy(ctx: FixContext) -> list[Fix]:
    """The guide's proxy settings for the runtime's unit, after a look at the current ones."""
    unit = "crio" if ctx.runtime == "cri-o" else "containerd"
    node = ctx.node or "<node>"
    return [
        Fix(f"See the proxy settings {unit} runs with on {node} (ssh to it): other registries "
            f"work from this node, so check whether HTTPS_PROXY is missing or NO_PROXY "
            f"catches {_upstream(ctx)}",
            _cmd("systemctl", "show", unit, "--property=Environment")),
        Fix(f"Give {unit} the proxy (sudo systemctl edit {unit}, paste this, then sudo "
            f"systemctl restart {unit}; replace <proxy>; keep {_upstream(ctx)} out of "
            "NO_PROXY)",
            "[Service]\nEnvironment=\"HTTPS_PROXY=http://<proxy>:3128\"\n"
            "Environment=\"NO_PROXY=10.0.0.0/8,192.168.0.0/16,.cluster.local\""),
    ]


def _docker_config_ignored(ctx: FixContext) -> list[Fix]:
    """The node's Docker credentials are not read: show the runtime, then the two ways that
    are read (the pod's pull secret comes from the cause's own fixes)."""
    node = ctx.node or "<node>"
    runtime = ctx.runtime or "containerd"
    fixes = [Fix(
        f"Confirm the node runs {runtime}: since dockershim's removal (Kubernetes 1.24) the "
        "kubelet's pulls do not read /root/.docker/config.json — give the pod a pull secret "
        "(the steps above)",
        _cmd("kubectl", "get", "node", args=[node],
             tail=["-o", "jsonpath={.status.nodeInfo.containerRuntimeVersion}"]))]
    if runtime == "cri-o":
        fixes.append(Fix(
            "Or node-wide: point CRI-O at an auth file in the containers-auth.json format "
            "(on every node; then sudo systemctl restart crio)",
            "sudo tee /etc/crio/crio.conf.d/10-auth.conf <<'EOF'\n[crio.image]\n"
            "global_auth_file = \"/etc/crio/auth.json\"\nEOF"))
    else:
        host = ctx.registry
        fixes.append(hosts_toml(
            host,
            f'server = "https://{host}"\n\n[host."https://{host}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
            f'  [host."https://{host}".header]\n'
            '    Authorization = "Basic <base64 of username:token>"',
            f"Or node-wide, for a registry that takes Basic auth: send credentials to {host} "
            "from containerd's hosts.toml (replace <base64 of username:token>)"))
    return fixes


def _alternative_fixes(cause: Cause, ctx: FixContext) -> list[Fix]:
    """For each other reading of the kubelet's words, its first step: the check that tells
    it apart (or the fix it would need), titled as that reading."""
    extra: list[Fix] = []
    for other in ctx.alternatives:
        if other is cause:
            continue
        first = _BUILDERS[other](ctx)[0]
        extra.append(Fix(f"If it is rather {CAUSES[other].title.lower()}: {first.title}",
                         first.command))
    return extra


def _finding_fixes(cause: Cause, ctx: FixContext) -> list[Fix]:
    """Extra steps that findings call for, whatever the cause."""
    extra: list[Fix] = []
    if Finding.NODE_RUNTIME_IGNORES_DOCKER_CONFIG in ctx.findings:
        extra.extend(_docker_config_ignored(ctx))
    if Finding.NODE_DISK_PRESSURE in ctx.findings and cause is not Cause.DISK_FULL:
        extra.extend(_disk_full(ctx)[:3])
    if Finding.IMPLICIT_LATEST_TAG in ctx.findings and cause is not Cause.TAG_NOT_FOUND:
        base = ctx.ref.familiar_repository if ctx.ref else "<image>"
        extra.append(set_image(ctx, f"{base}:<tag>",
                               "The image has no tag, so it floats on :latest: pin an explicit "
                               "tag (replace <tag>)"))
    if Finding.IMAGE_REWRITTEN in ctx.findings:
        extra.extend(_rewritten(ctx))
    if Finding.ENSURE_SECRET_PULLED_IMAGES in ctx.findings and not (
        ctx.missing_secret or ctx.wrong_registry_secret or ctx.unreferenced_secret
    ) and not CAUSES[cause].credentials_refused:
        extra.append(create_pull_secret(ctx, DEFAULT_SECRET_NAME))
        extra.append(attach_secret_to_service_account(ctx, DEFAULT_SECRET_NAME))
    return extra


def _rewritten(ctx: FixContext) -> list[Fix]:
    """Look at what rewrote the image: each matching mutating webhook's configuration (its
    rules, selectors and service), or, with none, the pod's own admission annotations."""
    wanted = ctx.template_image or "<template image>"
    fixes: list[Fix] = []
    for named in ctx.rewriting_webhooks[:3]:
        configuration, _, webhook = named.partition("/")
        if not names.is_dns1123_subdomain(configuration):
            continue  # never a live argument: the evidence line still names it
        fixes.append(Fix(
            f"The template asks for {wanted} but the pod runs {ctx.image}: mutating webhook "
            f"{webhook or configuration} matches this namespace — read its rules and selectors "
            "(a fix to the template alone may be rewritten the same way)",
            _cmd("kubectl", "get", "mutatingwebhookconfiguration", args=[configuration],
                 tail=["-o", "yaml"])))
    if not fixes:
        fixes.append(Fix(
            f"The template asks for {wanted} but the pod runs {ctx.image}: list the mutating "
            "webhooks and policy engines (Kyverno, Gatekeeper) that may rewrite images",
            "kubectl get mutatingwebhookconfigurations"))
    return fixes


def _dedupe(fixes: Iterable[Fix]) -> list[Fix]:
    seen: set[str] = set()
    out: list[Fix] = []
    for fix in fixes:
        if fix.command in seen:
            continue
        seen.add(fix.command)
        out.append(fix)
    return out


# -- the prevention audit and the credentials watch (bot/diagnosis/audit.py) ---------------------
# The same builders and the same rules for names: every name from the cluster is checked by
# `_checked` (a refused one becomes a <placeholder> and the title says why) and every argument
# is quoted by `_cmd`.


def _audited(ctx: FixContext, build: Callable[[FixContext], list[Fix]]) -> tuple[Fix, ...]:
    ctx, refused = _checked(ctx)
    return tuple(_explain_refused(_dedupe(build(ctx)), refused))


def _template_path(kind: str) -> str:
    """The JSON pointer of a workload's pod spec."""
    if kind == "CronJob":
        return "/spec/jobTemplate/spec/template/spec"
    return "/spec" if kind == "Pod" else "/spec/template/spec"


def audit_pin_tag(ctx: FixContext) -> tuple[Fix, ...]:
    """`:latest` or no tag: name a version."""

    def build(ctx: FixContext) -> list[Fix]:
        base = ctx.ref.familiar_repository if ctx.ref else "<image>"
        return [set_image(ctx, f"{base}:<tag>", "Name the version to run instead of a moving "
                          ":latest (replace <tag>; or pin a digest)")]

    return _audited(ctx, build)


def audit_pin_digest(ctx: FixContext) -> tuple[Fix, ...]:
    """A tag in a namespace that asks for digests: look the digest up, then pin it."""

    def build(ctx: FixContext) -> list[Fix]:
        base = ctx.ref.familiar_repository if ctx.ref else "<image>"
        return [
            Fix("Look up the digest the tag points at now (crane, from go-containerregistry)",
                _cmd("crane", "digest", args=[ctx.image])),
            set_image(ctx, f"{base}@sha256:<digest>",
                      "Pin that digest, so a re-tag or a cleanup cannot change what runs "
                      "(replace <digest>)"),
        ]

    return _audited(ctx, build)


def audit_move_pull_secrets(ctx: FixContext, secrets: Sequence[str]) -> tuple[Fix, ...]:
    """imagePullSecrets on a pod template: put them on the service account, then drop them
    from the template (a Pod's spec cannot change: it is re-created from its manifest)."""
    checked = [n if names.is_dns1123_subdomain(n) else "<secret-name>" for n in secrets]

    def build(ctx: FixContext) -> list[Fix]:
        listed = [*ctx.service_account_pull_secrets]
        listed += [n for n in checked if n not in listed]
        patch = json.dumps({"imagePullSecrets": [{"name": n} for n in listed]})
        fixes = [Fix(
            f"Attach {', '.join(checked)} to service account {ctx.service_account}, keeping "
            "what it lists (new pods of every workload using it inherit them)",
            _cmd("kubectl", "patch", "serviceaccount", args=[ctx.service_account],
                 tail=["-p", patch, *_ns(ctx)]))]
        if ctx.workload.kind == "Pod":
            fixes.append(Fix("Then drop imagePullSecrets from the pod's manifest and re-create "
                             "it (a pod's spec cannot change)",
                             _cmd("kubectl", "delete", args=[ctx.workload.kubectl_ref],
                                  tail=_ns(ctx))))
        else:
            remove = json.dumps([{"op": "remove",
                                  "path": f"{_template_path(ctx.workload.kind)}"
                                          "/imagePullSecrets"}])
            fixes.append(Fix(
                f"Then drop them from {ctx.workload.kubectl_ref}'s pod template (and from its "
                "manifest)",
                _cmd("kubectl", "patch", args=[ctx.workload.kubectl_ref],
                     tail=[*_ns(ctx), "--type=json", "-p", remove])))
        return fixes

    refused = [n for n in secrets if not names.is_dns1123_subdomain(n)]
    fixes = _audited(ctx, build)
    if not refused:
        return fixes
    note = (f" (replace <secret-name>: pull secret name {refused[0][:60]!r} is not a valid "
            "Kubernetes name)")
    return tuple(Fix(f.title + note, f.command) if "<secret-name>" in f.command else f
                 for f in fixes)


def audit_authenticate_docker_hub(ctx: FixContext) -> tuple[Fix, ...]:
    """Anonymous Docker Hub pulls share 100 pulls / 6 h per NAT IP: authenticate them."""

    def build(ctx: FixContext) -> list[Fix]:
        return [
            create_pull_secret(
                ctx, "dockerhub-creds",
                "Authenticate Docker Hub pulls: a free account doubles the quota and decouples "
                "it from the NAT IP (fill in <username> and <personal-access-token>)",
                placeholder="<personal-access-token>"),
            attach_secret_to_service_account(ctx, "dockerhub-creds"),
        ]

    return _audited(ctx, build)


def audit_credential_provider(ctx: FixContext) -> tuple[Fix, ...]:
    """A cloud registry on a static pull secret: let the kubelet fetch credentials itself."""
    cloud = cloud_registry(ctx.registry)
    if cloud is None:
        return ()
    return _audited(ctx, lambda _ctx: [credential_provider_config(cloud)])


def audit_pull_if_not_present(ctx: FixContext) -> tuple[Fix, ...]:
    """`Always` on an immutable reference re-asks the registry at every start for nothing."""
    return _audited(ctx, lambda ctx: [Fix(
        "An immutable reference never changes: pull it only when the node lacks it "
        "(imagePullPolicy IfNotPresent)", _policy_patch(ctx, "IfNotPresent"))])


def audit_private_image_credentials(ctx: FixContext) -> tuple[Fix, ...]:
    """A private image pulled without credentials works only from the node's cache."""

    def build(ctx: FixContext) -> list[Fix]:
        return [create_pull_secret(ctx, DEFAULT_SECRET_NAME),
                attach_secret_to_service_account(ctx, DEFAULT_SECRET_NAME)]

    return _audited(ctx, build)


def audit_invalid_image(ctx: FixContext) -> tuple[Fix, ...]:
    return _audited(ctx, _invalid_name)


def audit_create_missing_secret(ctx: FixContext) -> tuple[Fix, ...]:
    """A referenced pull secret that does not exist (`ctx.missing_secret`)."""

    def build(ctx: FixContext) -> list[Fix]:
        name = ctx.missing_secret or "<secret-name>"
        return [create_pull_secret(
            ctx, name, f"Create {name} in namespace {ctx.namespace}, or stop referencing it "
            "(fill in <registry>, <username> and <token>)")]

    return _audited(ctx, build)


def audit_refresh_ecr_secret(ctx: FixContext) -> tuple[Fix, ...]:
    """An ECR pull secret older than its 12-hour token (`ctx.missing_secret` names it)."""
    return _audited(ctx, _cloud_fixes)


def audit_unused_secret(ctx: FixContext, name: str) -> tuple[Fix, ...]:
    """A pull secret nothing references: attach it, or delete it."""

    def build(ctx: FixContext) -> list[Fix]:
        secret = ctx.unreferenced_secret or "<secret-name>"
        return [
            attach_secret_to_service_account(ctx, secret),
            Fix(f"Or, if nothing outside this cluster's pods reads it, delete {secret}",
                _cmd("kubectl", "delete", "secret", args=[secret], tail=_ns(ctx))),
        ]

    return _audited(replace(ctx, unreferenced_secret=name), build)


def audit_secret_registries(ctx: FixContext, name: str) -> tuple[Fix, ...]:
    """A pull secret whose registries no image of its namespace comes from."""

    def build(ctx: FixContext) -> list[Fix]:
        secret = ctx.wrong_registry_secret or "<secret-name>"
        return [show_secret_registries(ctx, secret),
                Fix(f"Re-create {secret} for the registry the images use (fill in <registry>, "
                    "<username> and <token>)",
                    _create("secret docker-registry", secret,
                            _flag("docker-server", "<registry>"),
                            _flag("docker-username", "<username>"),
                            _flag("docker-password", "<token>"), *_ns(ctx),
                            "--dry-run=client", "-o", "yaml") + " | kubectl apply -f -")]

    return _audited(replace(ctx, wrong_registry_secret=name), build)


# -- the escalation bundle (bot/diagnosis/bundle.py) ---------------------------------------------
# The field guide's "When to escalate" commands, for one pod: the same quoting (`_cmd`) and the
# same rule for names (one the apiserver would refuse becomes a <placeholder>).

#: Images and registry hosts a bundle writes commands for (a pod rarely has more).
MAX_BUNDLE_IMAGES = 4

_RUNTIME_UNITS = {"containerd": ("containerd", "/var/lib/containerd"),
                  "cri-o": ("crio", "/var/lib/containers"),
                  "docker": ("docker", "/var/lib/docker")}


def bundle_commands(*, namespace: str, pod: str, node: str | None, images: Sequence[str],
                    runtime: str = "") -> tuple[Fix, ...]:
    """What to run next, in the guide's order: describe the pod, pull from the node, the
    runtime's version, disk and log, the registry's reachability (and the proxy the runtime
    uses), the node's conditions, the cluster's version. `runtime` is the node's runtime name
    (containerd, cri-o, docker; unknown: containerd's paths)."""
    ns = namespace if names.is_dns1123_label(namespace) else "<namespace>"
    pod_name = pod if names.is_dns1123_subdomain(pod) else "<pod>"
    node_name = node if node and names.is_dns1123_subdomain(node) else "<node>"
    unit, data_dir = _RUNTIME_UNITS.get(runtime, _RUNTIME_UNITS["containerd"])
    on_node = f"on the node (ssh to {node_name})"
    fixes = [Fix("The pod's full description, especially its Events",
                 _cmd("kubectl", "describe", "pod", args=[pod_name], tail=["-n", ns]))]
    unique = list(dict.fromkeys(i for i in images if i))[:MAX_BUNDLE_IMAGES]
    for image in unique:
        fixes.append(Fix(f"Whether the node can pull {image} itself, {on_node}",
                         _cmd("sudo", "crictl", "pull", args=[image])))
    fixes.append(Fix(f"The container runtime and its version, {on_node}",
                     _cmd("sudo", "crictl", "version")))
    fixes.append(Fix(f"Disk space where the runtime keeps images, {on_node}",
                     _cmd("df", "-h", data_dir)))
    fixes.append(Fix(f"The runtime's own log of the last hour, {on_node}",
                     _cmd("sudo", "journalctl", "-u", unit, "--since", "-1h", "--no-pager")))
    hosts: list[str] = []
    for image in unique:
        ref = try_parse_image(image)
        if ref is not None:
            hosts.append("registry-1.docker.io" if ref.is_docker_hub else ref.registry)
    for host in dict.fromkeys(hosts):
        fixes.append(Fix(f"Whether {host} answers from the node (200 or 401: reachable; a "
                         f"proxy or firewall shows here), {on_node}",
                         _cmd("curl", "-v", f"https://{host}/v2/")))
    fixes.append(Fix(f"The proxy settings the runtime uses (HTTPS_PROXY, NO_PROXY), {on_node}",
                     _cmd("systemctl", "show", unit, "--property=Environment")))
    fixes.append(Fix("The node's conditions", _cmd("kubectl", "describe", "node",
                                                   args=[node_name]) + " | grep -A5 Conditions"))
    fixes.append(Fix("The Kubernetes version", _cmd("kubectl", "version")))
    return tuple(fixes)
