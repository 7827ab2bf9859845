"""A hospital directory for the sign-in tests: Debian's slapd with a throwaway configuration
and the people, machine accounts and groups of issue 29, seeded with ldapadd.

    directory = Directory(Path("/srv/prh-dir"), port)
    directory.write()                 # slapd.conf, the database folder, seed.ldif
    argv = directory.slapd_argv()     # run it (as a transient unit inside a booted system)
    directory.seed_argv()             # ldapadd of seed.ldif as the directory's admin
    directory.env_file(...)           # the directory file install-server.sh --directory reads
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUFFIX = "dc=prh,dc=test"
ADMIN_DN = f"cn=admin,{SUFFIX}"
BIND_DN = f"cn=prefect-front,ou=services,{SUFFIX}"
GROUPS = {  # role: the group's common name
    "viewer": "prefect-viewers",
    "operator": "prefect-operators",
    "admin": "prefect-admins",
    "worker": "prefect-workers",
    "deployer": "prefect-deployers",
}
# user: (role, password); a password with characters a shell or a URL would trip on.
USERS = {
    "alice": ("operator", "alice-Pw:1&x"),
    "bob": ("viewer", "bob-Pw:2&x"),
    "carol": ("admin", "carol-Pw:3&x"),
    "svc-worker-1": ("worker", "worker-Pw:4&x"),
    "svc-ci": ("deployer", "ci-Pw:5&x"),
    "dave": (None, "dave-Pw:6&x"),  # in the directory, in no Prefect group
}
BIND_PASSWORD = "front-Pw:7&x"  # noqa: S105 (a throwaway test directory)
ADMIN_PASSWORD = "admin-Pw:8&x"  # noqa: S105


def group_dn(role: str) -> str:
    return f"cn={GROUPS[role]},ou=groups,{SUFFIX}"


def user_dn(user: str) -> str:
    return f"uid={user},ou=people,{SUFFIX}"


@dataclass
class Directory:
    root: Path  # same path here and inside a booted system
    port: int

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def write(self) -> None:
        (self.root / "db").mkdir(parents=True, exist_ok=True)
        (self.root / "slapd.conf").write_text(
            "\n".join(
                [
                    "include /etc/ldap/schema/core.schema",
                    "include /etc/ldap/schema/cosine.schema",
                    "include /etc/ldap/schema/inetorgperson.schema",
                    f"pidfile {self.root}/slapd.pid",
                    "modulepath /usr/lib/ldap",
                    "moduleload back_mdb",
                    "database mdb",
                    f"suffix {SUFFIX}",
                    f"rootdn {ADMIN_DN}",
                    f"rootpw {ADMIN_PASSWORD}",
                    f"directory {self.root}/db",
                    "maxsize 10485760",
                    "access to attrs=userPassword by * auth",
                    "access to * by users read by * none",
                    "",
                ]
            )
        )
        (self.root / "seed.ldif").write_text(self.seed())
        (self.root / "admin-password").write_text(ADMIN_PASSWORD)

    def seed(self) -> str:
        entries = [
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: PRH\ndc: prh",
            f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people",
            f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services",
            f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups",
            f"dn: {BIND_DN}\nobjectClass: person\ncn: prefect-front\nsn: front\n"
            f"userPassword: {BIND_PASSWORD}",
        ]
        for user, (_, password) in USERS.items():
            entries.append(
                f"dn: {user_dn(user)}\nobjectClass: inetOrgPerson\nuid: {user}\ncn: {user}\n"
                f"sn: {user}\nuserPassword: {password}"
            )
        for role, name in GROUPS.items():
            members = [user_dn(user) for user, (their, _) in USERS.items() if their == role]
            lines = [f"dn: {group_dn(role)}", "objectClass: groupOfNames", f"cn: {name}"]
            lines += [f"member: {member}" for member in members]
            entries.append("\n".join(lines))
        return "\n\n".join(entries) + "\n"

    def slapd_argv(self) -> list[str]:
        return ["/usr/sbin/slapd", "-d", "0", "-f", str(self.root / "slapd.conf"), "-h", self.url]

    def seed_argv(self) -> list[str]:
        return [
            "ldapadd", "-x", "-H", self.url, "-D", ADMIN_DN,
            "-y", str(self.root / "admin-password"), "-f", str(self.root / "seed.ldif"),
        ]  # fmt: skip

    def env_file(self, **overrides: str) -> str:
        """The directory file of the README for this directory."""
        values = {
            "DIRECTORY_URL": self.url,
            "DIRECTORY_BASE_DN": SUFFIX,
            "DIRECTORY_BIND_DN": BIND_DN,
            "DIRECTORY_BIND_PASSWORD": BIND_PASSWORD,
            "DIRECTORY_USER_ATTRIBUTE": "uid",
            **{f"{role.upper()}_GROUP": group_dn(role) for role in GROUPS},
            **overrides,
        }
        return "".join(f"{key}={value}\n" for key, value in values.items() if value is not None)


def auth_string(user: str) -> str:
    """PREFECT_API_AUTH_STRING of *user*."""
    return f"{user}:{USERS[user][1]}"
