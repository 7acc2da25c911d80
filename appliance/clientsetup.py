"""The exact client set-up commands for one organization, for the CLI and the admin UI.

The repo name clients use must be the organization name: the registry's signed ``repository``
field says so, and mix and rebar3 refuse a mismatch (hex-protocol.md §3.5).
"""

import dataclasses
import typing

from appliance.errors import ConfigError

CA_FILE = "hexvault-ca.pem"  # what the set-up commands save the company CA as


class CompanyCA(typing.NamedTuple):
    """The CA clients must trust for the TLS front, when it is not a public one."""

    url: str
    fingerprint: str  # SHA-256 of the certificate, as `openssl x509 -fingerprint -sha256` prints it
    pem: bytes


def company_ca(config):
    """The CA named by the ``tls_ca_file`` setting, or None."""
    if not config.tls_ca_file:
        return None
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        with open(config.tls_ca_file, "rb") as fh:
            pem = fh.read()
        cert = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"setting tls_ca_file: cannot read a PEM certificate from {config.tls_ca_file} ({exc})") from None
    fingerprint = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
    return CompanyCA(f"{config.external_url}/ca.pem", fingerprint, pem)

# The rebar.config of an Erlang library published with rebar3_hex, its docs built by edoc.
REBAR3_HEX_PROJECT_CONFIG = ("{erl_opts, [debug_info]}.\n{deps, []}.\n{project_plugins, [rebar3_hex]}.\n"
                             "{hex, [{doc, edoc}]}.")


@dataclasses.dataclass(frozen=True)
class ClientSetup:
    org: str
    repo_url: str
    mirror_url: str
    api_url: str
    public_key_pem: str
    fingerprint: str
    repo_key: str
    api_key: str
    read_key: str
    ca: CompanyCA = None

    @property
    def public_key_url(self):
        return f"{self.repo_url}/public_key"

    @property
    def save_ca(self):
        """Fetch the company CA (not yet trusted, hence -k) and show its fingerprint to compare
        with the one the administrator published."""
        if not self.ca:
            return None
        return (f"curl -fsSk -o {CA_FILE} {self.ca.url} && "
                f"openssl x509 -noout -fingerprint -sha256 -in {CA_FILE}   # must print {self.ca.fingerprint}")

    @property
    def mix_trust_ca(self):
        # Hex replaces its own CA list with this file (hex-protocol.md §6.2).
        return f'mix hex.config cacerts_path "$PWD/{CA_FILE}"' if self.ca else None

    @property
    def save_public_key(self):
        cacert = f" --cacert {CA_FILE}" if self.ca else ""
        return f"curl -fsS{cacert} -o {self.org}.pem {self.public_key_url}"

    @property
    def mix_repo_add(self):
        return (f"mix hex.repo add {self.org} {self.repo_url} --public-key {self.org}.pem "
                f"--auth-key {self.repo_key}")

    @property
    def mix_repo_add_fingerprint(self):
        return (f"mix hex.repo add {self.org} {self.repo_url} --fetch-public-key {self.fingerprint} "
                f"--auth-key {self.repo_key}")

    @property
    def mix_dep(self):
        return f'{{:my_package, "~> 0.1", repo: "{self.org}"}}'

    @property
    def mix_hexpm_org(self):
        """hex.pm-style `organization: ORG` deps: mix fetches them as repo hexpm:ORG from
        <hexpm URL>/repos/ORG, which the mirror serves (routes/repository.py)."""
        return "\n".join([
            self.save_public_key,
            f"mix hex.repo set hexpm --url {self.mirror_url}",
            f"mix hex.repo add hexpm:{self.org} {self.mirror_url}/repos/{self.org} --public-key {self.org}.pem",
            f"HEX_API_URL={self.api_url} mix hex.organization auth {self.org} --key {self.repo_key}",
        ])

    @property
    def mix_hexpm_org_note(self):
        # Seen with the real clients (docs/clients.md): only Hex 2.5.1 warns about this form.
        return (f"Hex 2.5.1 warns on every deps.get that authenticating to the {self.org} repository with a "
                f"stored key is deprecated; other versions do not, and repo: \"{self.org}\" deps never warn.")

    @property
    def mix_publish(self):
        return (f"HEX_API_URL={self.api_url} HEX_API_KEY={self.api_key} "
                f"mix hex.publish --organization {self.org}")

    @property
    def rebar3_config(self):
        # repo_public_key is mandatory for custom rebar3 repos (hex_core maps:get/2 crashes
        # without it). The last three keys are rebar3_hex's: api_url for every `rebar3 hex`
        # command; api_repository, or the plugin's API calls go to /api/... (the default
        # organization) whatever --repo says; read_key, the only key whoami and owner list use
        # (they ignore api_key and HEX_API_KEY).
        pem = self.public_key_pem.strip().replace("\n", "\\n")
        # rebar3 trusts a CA from ssl_cacerts_path in its global config (rebar_utils get_cacerts).
        trust = f'{{ssl_cacerts_path, "/ABSOLUTE/PATH/{CA_FILE}"}}.\n' if self.ca else ""
        return (
            "%% ~/.config/rebar3/rebar.config\n"
            + trust +
            "{hex, [{repos, [\n"
            f"  #{{name => <<\"{self.org}\">>,\n"
            f"    repo_url => <<\"{self.repo_url}\">>,\n"
            f"    repo_public_key => <<\"{pem}\">>,\n"
            f"    repo_key => <<\"{self.repo_key}\">>,\n"
            f"    api_url => <<\"{self.api_url}\">>,\n"
            f"    api_repository => <<\"{self.org}\">>,\n"
            f"    read_key => <<\"{self.read_key}\">>}}\n"
            "]}]}."
        )

    # rebar3_hex takes the key that publishes and retires from HEX_API_KEY (or api_key in the
    # repos entry); with an API key in the environment it never prompts for a password.
    def rebar3_publish(self, replace=False):
        return (f"HEX_API_KEY={self.api_key} rebar3 hex publish --repo {self.org}"
                + (" --replace" if replace else ""))

    def rebar3_retire(self, package="my_package", version="0.1.0"):
        return (f"HEX_API_KEY={self.api_key} rebar3 hex retire {package} {version} security "
                f"--message \"CVE-...\" --repo {self.org}")

    def rebar3_owner_list(self, package="my_package"):
        return f"rebar3 hex owner list {package} --repo {self.org}"

    @property
    def rebar3_whoami(self):
        return f"rebar3 hex user whoami --repo {self.org}"

    def rebar3_hex_commands(self, package="my_package", version="0.1.0"):
        return "\n".join([self.rebar3_publish(), self.rebar3_publish(replace=True),
                          self.rebar3_retire(package, version), self.rebar3_owner_list(package),
                          self.rebar3_whoami])

    @property
    def rebar3_dep(self):
        return "{deps, [{my_package, \"0.1.0\"}]}."


def for_org(base_url, org_name, public_key_pem, fingerprint, repo_key="<REPOSITORY_KEY>", api_key="<API_KEY>",
            ca=None, read_key=None):
    """``read_key`` (an api:read key; the API key when not given) is what rebar3_hex reads the API with."""
    return ClientSetup(org=org_name, repo_url=f"{base_url}/repos/{org_name}", mirror_url=f"{base_url}/mirror/hexpm",
                       api_url=f"{base_url}/api",
                       public_key_pem=public_key_pem, fingerprint=fingerprint, repo_key=repo_key, api_key=api_key,
                       read_key=read_key or api_key, ca=ca)


def render_text(setup):
    return "\n".join([
        f"# Repository {setup.org}: use exactly this name in your clients.",
        "",
        *([f"## the TLS front's CA (once per machine; compare the fingerprint with the administrator's)",
           setup.save_ca, ""] if setup.ca else []),
        "## mix",
        *([setup.mix_trust_ca] if setup.ca else []),
        setup.save_public_key,
        setup.mix_repo_add,
        f"#   or, checking the key by fingerprint: {setup.mix_repo_add_fingerprint}",
        f"#   mix.exs dependency: {setup.mix_dep}",
        f"#   publish: {setup.mix_publish}",
        f"#   keeping hex.pm-style {{:my_package, \"~> 0.1\", organization: \"{setup.org}\"}} deps "
        "(public packages then come from the hex.pm mirror):",
        *(f"#     {line}" for line in setup.mix_hexpm_org.split("\n")),
        f"#   ({setup.mix_hexpm_org_note})",
        "",
        "## rebar3",
        setup.rebar3_config,
        f"%% rebar.config of your project: {setup.rebar3_dep}",
        "%% rebar3_hex (publish with docs, retire, owner list, whoami):",
        *(f"%%   {line}" for line in setup.rebar3_hex_commands().split("\n")),
    ])
