"""The exact client set-up commands for one organization, for the CLI and the admin UI.

The repo name clients use must be the organization name: the registry's signed ``repository``
field says so, and mix and rebar3 refuse a mismatch (hex-protocol.md §3.5).
"""

import dataclasses


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

    @property
    def public_key_url(self):
        return f"{self.repo_url}/public_key"

    @property
    def save_public_key(self):
        return f"curl -fsS -o {self.org}.pem {self.public_key_url}"

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
    def mix_publish(self):
        return (f"HEX_API_URL={self.api_url} HEX_API_KEY={self.api_key} "
                f"mix hex.publish --organization {self.org}")

    @property
    def rebar3_config(self):
        # repo_public_key is mandatory for custom rebar3 repos (hex_core maps:get/2 crashes
        # without it), and api_url is needed for `rebar3 hex` commands.
        pem = self.public_key_pem.strip().replace("\n", "\\n")
        return (
            "%% ~/.config/rebar3/rebar.config\n"
            "{hex, [{repos, [\n"
            f"  #{{name => <<\"{self.org}\">>,\n"
            f"    repo_url => <<\"{self.repo_url}\">>,\n"
            f"    repo_public_key => <<\"{pem}\">>,\n"
            f"    repo_key => <<\"{self.repo_key}\">>,\n"
            f"    api_url => <<\"{self.api_url}\">>}}\n"
            "]}]}."
        )

    @property
    def rebar3_dep(self):
        return "{deps, [{my_package, \"0.1.0\"}]}."


def for_org(base_url, org_name, public_key_pem, fingerprint, repo_key="<REPOSITORY_KEY>", api_key="<API_KEY>"):
    return ClientSetup(org=org_name, repo_url=f"{base_url}/repos/{org_name}", mirror_url=f"{base_url}/mirror/hexpm",
                       api_url=f"{base_url}/api",
                       public_key_pem=public_key_pem, fingerprint=fingerprint, repo_key=repo_key, api_key=api_key)


def render_text(setup):
    return "\n".join([
        f"# Repository {setup.org}: use exactly this name in your clients.",
        "",
        "## mix",
        setup.save_public_key,
        setup.mix_repo_add,
        f"#   or, checking the key by fingerprint: {setup.mix_repo_add_fingerprint}",
        f"#   mix.exs dependency: {setup.mix_dep}",
        f"#   publish: {setup.mix_publish}",
        f"#   keeping hex.pm-style {{:my_package, \"~> 0.1\", organization: \"{setup.org}\"}} deps "
        "(public packages then come from the hex.pm mirror):",
        *(f"#     {line}" for line in setup.mix_hexpm_org.split("\n")),
        "",
        "## rebar3",
        setup.rebar3_config,
        f"%% rebar.config of your project: {setup.rebar3_dep}",
    ])
