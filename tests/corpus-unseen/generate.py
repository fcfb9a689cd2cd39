#!/usr/bin/env python3
"""The second error corpus (issue 16): real outputs of tools the healer has no dedicated parser for.

Every case runs a real tool of this machine on a small broken input in a scratch directory and
records what it printed (stdout and stderr merged, as a CI log has them) with its exit code. The
labels are written here, per group, by hand: a group is one root cause, its variants differ in
names, paths and values, so the same group must get one signature and different groups different
ones. `split` says whether a group may be looked at while tuning (`dev`) or is kept out of it
(`heldout`): whole tools are held out, so the held-out figures are those of tools never tuned for.

usage: tests/corpus-unseen/generate.py [OUT]   (default tests/fixtures/corpus-unseen/cases.jsonl)

Needs the tools named below; a case whose tool is missing is skipped with a note on stderr, so
the file records which ones ran. PostgreSQL, MariaDB and Redis are the machine's own services on
127.0.0.1; connection failures use port 1 of loopback, where nothing listens. Deterministic
except for what the tools print (timings, versions): regenerate and review the diff.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "fixtures", "corpus-unseen", "cases.jsonl")

# tools held out of tuning: their groups are the held-out test
HELDOUT = {"sqlite3", "gpg", "qemu-img", "awk", "rsync", "dpkg", "erlang", "unzip"}

CASES = []


def case(tool, group, category, key, variants, needs=None):
    """variants: list of (files: dict name -> text, argv or shell string)."""
    CASES.append((tool, group, category, key, variants, needs or tool))


# --- make: a missing prerequisite, a broken Makefile, a wrapped failure --------------------------
case("make", "make-no-rule", "file_not_found", "{target}", [
    ({"Makefile": "all: config.h\n\techo ok\n"}, "make", {"target": "config.h"}),
    ({"Makefile": "app: libfoo.a main.o\n\tcc -o app main.o libfoo.a\n"}, "make app", {"target": "libfoo.a"}),
    ({"build.mk": "gen: src/gen.c\n\ttrue\n"}, "make -f build.mk gen", {"target": "src/gen.c"}),
])
case("make", "make-missing-separator", "syntax_error", "", [
    ({"Makefile": "all:\n    echo hi\n"}, "make", {}),
    ({"rules.mk": "x = 1\n\ntest:\n  ./run-tests\n"}, "make -f rules.mk test", {}),
])
case("make", "perl-module-missing", "missing_dependency", "{module}", [
    ({"Makefile": "check:\n\tperl -e 'use Text::CSV_XS;'\n"}, "make check", {"module": "Text::CSV_XS"}),
], needs="perl")

# --- perl -----------------------------------------------------------------------------------------
case("perl", "perl-module-missing", "missing_dependency", "{module}", [
    ({}, ["perl", "-e", "use Foo::Bar;"], {"module": "Foo::Bar"}),
    ({"report.pl": "use strict;\nuse JSON::XS;\nprint 1;\n"}, "perl report.pl", {"module": "JSON::XS"}),
])
case("perl", "perl-undefined-sub", "unresolved_symbol", "{sub}", [
    ({"a.pl": "use strict;\nfrobnicate(1);\nsub other { 1 }\n"}, "perl a.pl", {"sub": "main::frobnicate"}),
    ({"b.pl": "my $x = 2;\nprint compute_total($x);\n"}, "perl b.pl", {"sub": "main::compute_total"}),
])
case("perl", "perl-syntax", "syntax_error", "", [
    ({"c.pl": "my $x = ;\nprint $x;\n"}, "perl -c c.pl", {}),
    ({"d.pl": "use strict;\nmy @a = (1, 2;\nprint @a;\n"}, "perl -c d.pl", {}),
])

# --- maven (offline: this machine reaches no repository) ------------------------------------------
POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>com.example</groupId><artifactId>app</artifactId><version>1.0</version>
  <dependencies>
    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>
  </dependencies>
</project>
"""
case("mvn", "mvn-offline-plugin-unresolved", "missing_dependency", "{ga}", [
    ({"pom.xml": POM.format(g="org.example.nope", a="widgets", v="1.2.3")}, "mvn -o -q -B compile",
     {"ga": "org.apache.maven.plugins:maven-resources-plugin"}),
    ({"pom.xml": POM.format(g="io.acme", a="acme-core", v="4.0")}, "mvn -o -q -B test-compile",
     {"ga": "org.apache.maven.plugins:maven-resources-plugin"}),
])

# --- erlang ---------------------------------------------------------------------------------------
case("erlang", "erlc-syntax", "syntax_error", "", [
    ({"m.erl": "-module(m).\n-export([f/0]).\nf() -> ok\n"}, "erlc m.erl", {}),
    ({"calc.erl": "-module(calc).\n-export([add/2]).\nadd(A, B) -> A + * B.\n"}, "erlc calc.erl", {}),
], needs="erlc")
case("erlang", "escript-undef", "unresolved_symbol", "{fun}", [
    ({"s.escript": "#!/usr/bin/env escript\nmain(_) -> nope_mod:start().\n"}, "escript s.escript",
     {"fun": "nope_mod:start/0"}),
    ({"t.escript": "#!/usr/bin/env escript\nmain(_) -> lists:frobnicate([1]).\n"}, "escript t.escript",
     {"fun": "lists:frobnicate/1"}),
], needs="escript")

# --- tcl ------------------------------------------------------------------------------------------
case("tclsh", "tcl-invalid-command", "unresolved_symbol", "{cmd}", [
    ({"a.tcl": "set x 1\nfrob $x\n"}, "tclsh a.tcl", {"cmd": "frob"}),
    ({"b.tcl": "proc main {} { do_work 3 }\nmain\n"}, "tclsh b.tcl", {"cmd": "do_work"}),
])
case("tclsh", "tcl-package-missing", "missing_dependency", "{pkg}", [
    ({"c.tcl": "package require Foo\n"}, "tclsh c.tcl", {"pkg": "Foo"}),
    ({"d.tcl": "package require tdom 0.9\nputs ok\n"}, "tclsh d.tcl", {"pkg": "tdom"}),
])

# --- databases ------------------------------------------------------------------------------------
PG = "psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -d test"
case("psql", "psql-connection-refused", "transient", "", [
    ({}, "psql -h 127.0.0.1 -p 1 -U postgres -c 'select 1'", {}),
    ({}, "psql -h 127.0.0.1 -p 9 -U app -d orders -c 'select count(*) from t'", {}),
])
case("psql", "psql-relation-missing", "unresolved_symbol", "{rel}", [
    ({}, PG + " -c 'select * from nope_table'", {"rel": "nope_table"}),
    ({}, PG + " -c 'insert into audit_log values (1)'", {"rel": "audit_log"}),
])
case("psql", "psql-syntax", "syntax_error", "", [
    ({}, PG + " -c 'SELEC 1'", {}),
    ({}, PG + " -c 'select from where'", {}),
])
case("mariadb", "mysql-table-missing", "unresolved_symbol", "{table}", [
    ({}, "mariadb -h 127.0.0.1 -u root test -e 'select * from nope'", {"table": "test.nope"}),
    ({}, "mariadb -h 127.0.0.1 -u root test -e 'delete from sessions'", {"table": "test.sessions"}),
])
case("mariadb", "mysql-access-denied", "permission_denied", "{user}", [
    ({}, "mariadb -h 127.0.0.1 -u bob -pwrong test -e 'select 1'", {"user": "bob"}),
    ({}, "mariadb -h 127.0.0.1 -u deploy -psecret test -e 'select 1'", {"user": "deploy"}),
])
case("redis-cli", "redis-connection-refused", "transient", "", [
    ({}, "redis-cli -p 1 ping", {}),
    ({}, "redis-cli -h 127.0.0.1 -p 9 get session:42", {}),
])
case("sqlite3", "sqlite-no-table", "unresolved_symbol", "{table}", [
    ({}, "sqlite3 app.db 'select * from nope'", {"table": "nope"}),
    ({}, "sqlite3 data.db 'update users set a = 1'", {"table": "users"}),
])
case("sqlite3", "sqlite-syntax", "syntax_error", "", [
    ({}, "sqlite3 app.db 'SELEC 1'", {}),
    ({}, "sqlite3 x.db 'create table (a int)'", {}),
])

# --- network clients ------------------------------------------------------------------------------
case("curl", "curl-connection-refused", "transient", "", [
    ({}, "curl -sS http://127.0.0.1:1/health", {}),
    ({}, "curl -sS -X POST http://127.0.0.1:9/api/v1/jobs -d x=1", {}),
])
case("git", "git-remote-unreachable", "transient", "", [
    ({}, "git clone -q http://127.0.0.1:1/org/repo.git", {}),
    ({}, "git ls-remote http://127.0.0.1:9/team/tools.git", {}),
])
case("git", "git-pathspec", "file_not_found", "{path}", [
    ({}, "git init -q . && git add nope.txt", {"path": "nope.txt"}),
    ({}, "git init -q . && git add docs/missing.md", {"path": "docs/missing.md"}),
])
case("ssh", "ssh-connection-refused", "transient", "", [
    ({}, "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -p 1 127.0.0.1 true", {}),
    ({}, "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -p 9 deploy@127.0.0.1 uptime", {}),
])
case("docker", "docker-daemon-unreachable", "transient", "", [
    ({}, "docker ps", {}),
    ({}, "docker run --rm alpine:3.20 true", {}),
])
case("pip", "pip-index-unreachable", "transient", "", [
    ({}, "pip3 install --retries 1 --timeout 2 --index-url http://127.0.0.1:1/simple acme-left-pad-xyz", {}),
    ({}, "pip3 install --retries 1 --timeout 2 --index-url http://127.0.0.1:9/simple flask==3.0.0", {}),
], needs="pip3")
case("pip", "pip-no-distribution", "missing_dependency", "{pkg}", [
    ({"wheels/.keep": ""}, "pip3 install --no-index --find-links wheels nonexistent-pkg-xyz", {"pkg": "nonexistent-pkg-xyz"}),
    ({"wheels/.keep": ""}, "pip3 install --no-index --find-links wheels acme-widgets==2.1", {"pkg": "acme-widgets"}),
], needs="pip3")

# --- archives, files, crypto ----------------------------------------------------------------------
case("tar", "tar-missing-input", "file_not_found", "{path}", [
    ({}, "tar czf out.tgz nope", {"path": "nope"}),
    ({"src/a.txt": "a"}, "tar cf out.tar src build/assets", {"path": "build/assets"}),
])
case("unzip", "unzip-missing-archive", "file_not_found", "{path}", [
    ({}, "unzip -q nope.zip", {"path": "nope.zip"}),
    ({}, "unzip -q dist/release-1.2.zip -d out", {"path": "dist/release-1.2.zip"}),
])
case("openssl", "openssl-file-missing", "file_not_found", "{path}", [
    ({}, "openssl x509 -noout -in nope.pem", {"path": "nope.pem"}),
    ({}, "openssl rsa -noout -in keys/server.key", {"path": "keys/server.key"}),
])
case("gpg", "gpg-file-missing", "file_not_found", "{path}", [
    ({}, "gpg --batch --homedir . --verify nope.sig", {"path": "nope.sig"}),
    ({}, "gpg --batch --homedir . --decrypt secrets/env.gpg", {"path": "secrets/env.gpg"}),
])
case("qemu-img", "qemu-img-missing", "file_not_found", "{path}", [
    ({}, "qemu-img info nope.qcow2", {"path": "nope.qcow2"}),
    ({}, "qemu-img convert -O raw images/base.qcow2 out.raw", {"path": "images/base.qcow2"}),
])
case("rsync", "rsync-missing-source", "file_not_found", "{path}", [
    ({}, "rsync -a nope/ dest/", {"path": "nope"}),
    ({}, "rsync -a build/site/ public/", {"path": "build/site"}),
])

# --- text tools -----------------------------------------------------------------------------------
case("jq", "jq-filter-syntax", "syntax_error", "", [
    ({}, "echo '{}' | jq '.foo |'", {}),
    ({}, "echo '[1]' | jq 'map(. + )'", {}),
])
case("jq", "jq-input-invalid", "syntax_error", "", [
    ({}, "echo '{bad' | jq .", {}),
    ({"data.json": "[1, 2, abc]\n"}, "jq .a data.json", {}),
])
case("awk", "awk-syntax", "syntax_error", "", [
    ({}, "awk 'BEGIN { print ( }'", {}),
    ({"p.awk": "{ if ($1 > ) print }\n"}, "awk -f p.awk /dev/null", {}),
])
case("sed", "sed-unterminated-s", "syntax_error", "", [
    ({}, "echo a | sed 's/a/b'", {}),
    ({}, "echo x | sed -e 's|x|y'", {}),
])
case("dpkg", "dpkg-not-installed", "missing_dependency", "{pkg}", [
    ({}, "dpkg -s nonexistent-pkg-xyz", {"pkg": "nonexistent-pkg-xyz"}),
    ({}, "dpkg -L libacme-dev", {"pkg": "libacme-dev"}),
])
case("as", "as-no-such-instruction", "syntax_error", "{insn}", [
    ({"a.s": ".text\nfrob %eax\n"}, "as a.s -o a.o", {"insn": "frob"}),
    ({"boot.s": ".text\nmovl $1, %eax\nblorp %ebx, %ecx\n"}, "as boot.s -o boot.o", {"insn": "blorp"}),
])


# --- added 2026-12-06: more dev tools, so the tool-agnostic layer is tuned on a broader set -------
case("gzip", "gzip-missing", "file_not_found", "{path}", [
    ({}, "gzip -d nope.gz", {"path": "nope.gz"}),
    ({}, "gzip -d logs/app.log.gz", {"path": "logs/app.log.gz"}),
])
case("pkg-config", "pkg-config-missing", "missing_dependency", "{pkg}", [
    ({}, "pkg-config --cflags libfoo", {"pkg": "libfoo"}),
    ({}, "pkg-config --libs 'libacme-2.0 >= 2.1'", {"pkg": "libacme-2.0"}),
])
case("chmod", "chmod-missing", "file_not_found", "{path}", [
    ({}, "chmod 600 keys/id_rsa", {"path": "keys/id_rsa"}),
    ({}, "chmod +x run.sh", {"path": "run.sh"}),
])
case("cp", "cp-missing", "file_not_found", "{path}", [
    ({}, "cp missing.txt out.txt", {"path": "missing.txt"}),
    ({}, "cp -r assets/img public/", {"path": "assets/img"}),
])
case("timeout", "timeout-command-missing", "command_not_found", "{cmd}", [
    ({}, "timeout 5 frobctl start", {"cmd": "frobctl"}),
    ({}, "timeout 60 ./run-integration.sh", {"cmd": "./run-integration.sh"}),
])
case("env", "env-command-missing", "command_not_found", "{cmd}", [
    ({}, "env FOO=1 nosuchtool --help", {"cmd": "nosuchtool"}),
    ({}, "env -i PATH=/usr/bin deploy-app", {"cmd": "deploy-app"}),
])
case("iconv", "iconv-illegal-input", "runtime_error", "", [
    ({}, "printf '\\377\\376' | iconv -f utf-8 -t ascii", {}),
    ({"latin.txt": "caf\xe9\n"}, "iconv -f utf-8 -t utf-16 latin.txt", {}),
])
case("base64", "base64-invalid", "runtime_error", "", [
    ({}, "echo '!!!' | base64 -d", {}),
    ({"blob.b64": "QUJD$$$\n"}, "base64 -d blob.b64", {}),
])
case("mosquitto_pub", "mqtt-connection-refused", "transient", "", [
    ({}, "mosquitto_pub -p 1 -t a -m b", {}),
    ({}, "mosquitto_pub -h 127.0.0.1 -p 9 -t sensors/t1 -m 21.5", {}),
])
case("wget", "wget-connection-refused", "transient", "", [
    ({}, "wget -O out http://127.0.0.1:1/x", {}),
    ({}, "wget --tries=1 -O - http://127.0.0.1:9/api/health", {}),
])
case("pg_dump", "pg-database-missing", "unresolved_symbol", "{db}", [
    ({}, "pg_dump -h 127.0.0.1 -U postgres nope_db", {"db": "nope_db"}),
    ({}, "pg_dump -h 127.0.0.1 -U postgres -s analytics_2026", {"db": "analytics_2026"}),
])
case("rabbitmqctl", "rabbitmq-node-unreachable", "transient", "", [
    ({}, "timeout 60 rabbitmqctl -n nope@localhost status", {}),
    ({}, "timeout 60 rabbitmqctl -n rabbit@nohost list_queues", {}),
])

# --- added 2026-12-07: other families (compression, file utilities, loader, permissions, databases,
# brokers, Kubernetes, Terraform, YAML, test harness, disk full), so the generic layer is tuned on
# more than the tools above; whole tools again, none of them held out
case("xz", "xz-missing", "file_not_found", "{path}", [
    ({}, "xz -d nope.xz", {"path": "nope.xz"}),
    ({}, "xz -d dumps/db.sql.xz", {"path": "dumps/db.sql.xz"}),
])
case("xz", "xz-format", "runtime_error", "", [
    ({"bad.xz": "garbage"}, "xz -d bad.xz", {}),
    ({"backup/site.tar.xz": "not xz at all\n"}, "xz -t backup/site.tar.xz", {}),
])
case("zstd", "zstd-missing", "file_not_found", "{path}", [
    ({}, "zstd -d nope.zst", {"path": "nope.zst"}),
    ({}, "zstd -d -o out.bin cache/blob.zst", {"path": "cache/blob.zst"}),
])
case("zip", "zip-name-not-matched", "file_not_found", "{path}", [
    ({}, "zip -r out.zip nope", {"path": "nope"}),
    ({}, "zip dist.zip build/app.bin", {"path": "build/app.bin"}),
])
case("mv", "mv-missing", "file_not_found", "{path}", [
    ({}, "mv nope.txt dest/", {"path": "nope.txt"}),
    ({"config/.keep": ""}, "mv config/old.yml config/new.yml", {"path": "config/old.yml"}),
])
case("mkdir", "mkdir-parent-missing", "file_not_found", "{path}", [
    ({}, "mkdir build/out/x", {"path": "build/out/x"}),
    ({}, "mkdir logs/2026/12", {"path": "logs/2026/12"}),
])
case("touch", "touch-permission-denied", "permission_denied", "{path}", [
    ({}, "su nobody -s /bin/sh -c 'touch /etc/helix-x'", {"path": "/etc/helix-x"}),
    ({}, "su nobody -s /bin/sh -c 'touch /usr/share/helix.lock'", {"path": "/usr/share/helix.lock"}),
], needs="su")
case("sh", "script-not-executable", "permission_denied", "{path}", [
    ({"run.sh": "echo hi\n"}, "chmod 644 run.sh && ./run.sh", {"path": "./run.sh"}),
    ({"scripts/deploy.sh": "echo deploy\n"}, "chmod 600 scripts/deploy.sh && ./scripts/deploy.sh prod",
     {"path": "./scripts/deploy.sh"}),
])
case("ssh-keygen", "ssh-keygen-missing", "file_not_found", "{path}", [
    ({}, "ssh-keygen -l -f nope.pub", {"path": "nope.pub"}),
    ({}, "ssh-keygen -y -f keys/deploy_ed25519", {"path": "keys/deploy_ed25519"}),
])
case("grep", "grep-missing", "file_not_found", "{path}", [
    ({}, "grep foo nope.txt", {"path": "nope.txt"}),
    ({}, "grep -rn TODO src/missing", {"path": "src/missing"}),
])
case("find", "find-missing", "file_not_found", "{path}", [
    ({}, "find nope -name x", {"path": "nope"}),
    ({}, "find build/dist -type f", {"path": "build/dist"}),
])
case("xargs", "xargs-command-missing", "command_not_found", "{cmd}", [
    ({}, "echo a | xargs nosuchcmd", {"cmd": "nosuchcmd"}),
    ({}, "printf 'a.txt\\nb.txt\\n' | xargs -n1 lint-file", {"cmd": "lint-file"}),
])
case("socat", "socat-connection-refused", "transient", "", [
    ({}, "socat - TCP:127.0.0.1:1 </dev/null", {}),
    ({}, "echo ping | socat - TCP:localhost:9", {}),
])
case("nm", "nm-missing", "file_not_found", "{path}", [
    ({}, "nm nope.o", {"path": "nope.o"}),
    ({}, "nm -D lib/libfoo.so", {"path": "lib/libfoo.so"}),
])
LOADER = ("printf 'int f(void);\\nint main(void){{return f();}}\\n' > m.c && printf 'int f(void){{return 0;}}\\n' > f.c"
          " && gcc -shared -fPIC -o lib{lib}.so.{v} f.c -Wl,-soname,lib{lib}.so.{v} && ln -s lib{lib}.so.{v} lib{lib}.so"
          " && gcc -o {app} m.c -L. -l{lib} && rm lib{lib}.so* && ./{app}")
case("ld.so", "shared-library-missing", "missing_dependency", "{lib}", [
    ({}, LOADER.format(lib="acme", v="1", app="app"), {"lib": "libacme.so.1"}),
    ({}, LOADER.format(lib="widget", v="2", app="server"), {"lib": "libwidget.so.2"}),
], needs="gcc")
case("mysqldump", "mysqldump-unknown-database", "unresolved_symbol", "{db}", [
    ({}, "mysqldump -h 127.0.0.1 -u root nope_db", {"db": "nope_db"}),
    ({}, "mysqldump -h 127.0.0.1 -u root --no-data analytics_2026", {"db": "analytics_2026"}),
])
case("dropdb", "dropdb-missing", "unresolved_symbol", "{db}", [
    ({}, "dropdb -h 127.0.0.1 -U postgres nope_db", {"db": "nope_db"}),
    ({}, "dropdb -h 127.0.0.1 -U postgres staging_copy", {"db": "staging_copy"}),
])
case("pg_isready", "pg-no-response", "transient", "", [
    ({}, "pg_isready -h 127.0.0.1 -p 1", {}),
    ({}, "pg_isready -h 127.0.0.1 -p 9 -d orders", {}),
])
case("amqp-publish", "amqp-connection-refused", "transient", "", [
    ({}, "timeout 20 amqp-publish -u amqp://guest:guest@127.0.0.1:1 -r q -b x", {}),
    ({}, "timeout 20 amqp-publish -u amqp://app:pw@127.0.0.1:9/prod -r jobs -b '{}'", {}),
])
case("kubectl", "kubectl-connection-refused", "transient", "", [
    ({}, "timeout 30 kubectl --server=http://127.0.0.1:1 get pods", {}),
    ({}, "timeout 30 kubectl --server=http://127.0.0.1:9 get deployments -n prod", {}),
])
TF_PROVIDER = 'terraform {{\n  required_providers {{\n    {name} = {{ source = "{src}" }}\n  }}\n}}\n'
case("terraform", "terraform-registry-unreachable", "transient", "", [
    ({"main.tf": TF_PROVIDER.format(name="acme", src="acme/acme")}, "timeout 90 terraform init -no-color", {}),
    ({"infra/main.tf": TF_PROVIDER.format(name="aws", src="hashicorp/aws")},
     "cd infra && timeout 90 terraform init -no-color -input=false", {}),
])
case("terraform", "terraform-unclosed-block", "syntax_error", "", [
    ({"main.tf": 'resource "null_resource" "x" {\n  triggers = {\n}\n'}, "terraform validate -no-color", {}),
    ({"net.tf": 'variable "cidr" {\n  default = "10.0.0.0/16"\n'}, "terraform validate -no-color", {}),
])
case("terraform", "terraform-undeclared-variable", "unresolved_symbol", "{var}", [
    ({"main.tf": 'variable "a" {}\noutput "b" { value = var.nope }\n'}, "terraform validate -no-color", {"var": "nope"}),
    ({"app.tf": 'locals {\n  region = var.aws_region\n}\n'}, "terraform validate -no-color", {"var": "aws_region"}),
])
case("jq", "jq-cannot-add", "type_error", "", [
    ({}, "echo '{\"a\":1}' | jq '.a + \"x\"'", {}),
    ({"data.json": '{"count": 3}\n'}, "jq '.count + \"s\"' data.json", {}),
])
case("jq", "jq-cannot-index", "type_error", "", [
    ({}, "echo '{\"a\":{}}' | jq '.a[0]'", {}),
    ({"doc.json": '{"b": {"c": 1}}\n'}, "jq '.b[1]' doc.json", {}),
])
case("yq", "yq-yaml-invalid", "syntax_error", "", [
    ({"bad.yaml": "a: [1\n"}, "yq . bad.yaml", {}),
    ({"ci.yml": "jobs:\n  build:\n    steps: [make, test\n"}, "yq .jobs ci.yml", {}),
])
case("dd", "dd-missing", "file_not_found", "{path}", [
    ({}, "dd if=nope.img of=out.img", {"path": "nope.img"}),
    ({}, "dd if=images/disk.raw of=/dev/null bs=1M", {"path": "images/disk.raw"}),
])
case("dd", "dd-no-space", "resource_exhausted", "", [
    ({}, "dd if=/dev/zero of=/dev/full bs=1k count=1", {}),
    ({}, "dd if=/dev/urandom of=/dev/full bs=4k count=8", {}),
])
case("cp", "cp-no-space", "resource_exhausted", "", [
    ({"a.txt": "data\n"}, "cp a.txt /dev/full", {}),
    ({"build/app.bin": "x" * 100}, "cp build/app.bin /dev/full", {}),
])
case("git", "git-unknown-revision", "unresolved_symbol", "{rev}", [
    ({}, "git init -q . && git show nope-rev", {"rev": "nope-rev"}),
    ({}, "git init -q . && git log --oneline v9.9.9", {"rev": "v9.9.9"}),
])
case("git", "git-merge-unknown", "unresolved_symbol", "{ref}", [
    ({}, "git init -q . && git merge feature/x", {"ref": "feature/x"}),
    ({}, "git init -q . && git merge origin/release-2", {"ref": "origin/release-2"}),
])
case("make", "make-directory-missing", "file_not_found", "{path}", [
    ({}, "make -C nope", {"path": "nope"}),
    ({}, "make -C services/api build", {"path": "services/api"}),
])
case("install", "install-missing", "file_not_found", "{path}", [
    ({}, "install -m 644 nope.conf /tmp/helix-x", {"path": "nope.conf"}),
    ({}, "install -D build/app out/bin/app", {"path": "build/app"}),
])
case("sort", "sort-missing", "file_not_found", "{path}", [
    ({}, "sort nope.csv", {"path": "nope.csv"}),
    ({}, "sort -u data/ids.txt", {"path": "data/ids.txt"}),
])
case("prove", "prove-test-failed", "test_failure", "", [
    ({"t/basic.t": 'use Test::More tests => 1;\nis(1+1, 3, "adds");\n'}, "prove t/", {}),
    ({"t/api.t": 'use Test::More tests => 2;\nok(1, "loads");\nis("a", "b", "names match");\n'}, "prove -v t/api.t", {}),
])

# --- added 2026-12-07 (late): patch, gdb, PostgreSQL and MariaDB clients, binutils, coreutils ------
case("patch", "patch-file-missing", "file_not_found", "{path}", [
    ({}, "patch -p0 -i nope.diff", {"path": "nope.diff"}),
    ({"src/a.c": "int a;\n"}, "patch -p1 -i patches/fix-build.patch", {"path": "patches/fix-build.patch"}),
])
case("patch", "patch-hunk-failed", "runtime_error", "", [
    ({"a.txt": "x\n", "p.diff": "--- a.txt\n+++ a.txt\n@@ -1 +1 @@\n-y\n+z\n"}, "patch -p0 < p.diff", {}),
    ({"conf.ini": "a=1\nb=2\n", "c.diff": "--- conf.ini\n+++ conf.ini\n@@ -1,2 +1,2 @@\n a=1\n-b=3\n+b=4\n"},
     "patch -p0 -i c.diff", {}),
])
case("gdb", "gdb-no-executable", "file_not_found", "{path}", [
    ({}, "gdb -batch -ex run ./nope", {"path": "./nope"}),
    ({}, "gdb -batch -ex bt build/server", {"path": "build/server"}),
])
case("createdb", "createdb-connection-refused", "transient", "", [
    ({}, "createdb -h 127.0.0.1 -p 1 shop", {}),
    ({}, "createdb -h 127.0.0.1 -p 1 -U app analytics_test", {}),
])
case("pg_restore", "pg-restore-input-missing", "file_not_found", "{path}", [
    ({}, "pg_restore -d shop nope.dump", {"path": "nope.dump"}),
    ({}, "pg_restore --clean -d app backups/2024-01-01.dump", {"path": "backups/2024-01-01.dump"}),
])
case("mysqladmin", "mysqladmin-connection-refused", "transient", "", [
    ({}, "mysqladmin -h 127.0.0.1 -P 1 ping", {}),
    ({}, "mysqladmin -h 127.0.0.1 -P 1 -u root create shop", {}),
])
case("rm", "rm-missing", "file_not_found", "{path}", [
    ({}, "rm nope", {"path": "nope"}),
    ({}, "rm build/output.log", {"path": "build/output.log"}),
])
case("ln", "ln-exists", "runtime_error", "", [
    ({"a.txt": "x\n"}, "ln -s a.txt a.txt", {}),
    ({"bin/tool": "x\n", "tool": "y\n"}, "ln -s bin/tool tool", {}),
])
case("readelf", "readelf-missing", "file_not_found", "{path}", [
    ({}, "readelf -h nope", {"path": "nope"}),
    ({}, "readelf -s build/libfoo.so", {"path": "build/libfoo.so"}),
])
case("objdump", "binutils-format", "runtime_error", "", [
    ({"a.txt": "x\n"}, "objdump -d a.txt", {}),
    ({"lib/notes.md": "# hi\n"}, "objdump -t lib/notes.md", {}),
])
case("ar", "ar-format", "runtime_error", "", [
    ({"a.txt": "x\n"}, "ar t a.txt", {}),
    ({"libx.a": "not an archive\n"}, "ar x libx.a", {}),
])
case("bc", "bc-syntax", "syntax_error", "", [
    ({}, "echo '1 +' | bc && false", {}),
    ({}, "echo 'x = (2 * 3' | bc && false", {}),
])
case("bzip2", "bzip2-format", "runtime_error", "", [
    ({"b.bz2": "x\n"}, "bzip2 -d b.bz2", {}),
    ({"logs/app.log.bz2": "plain text\n"}, "bzip2 -dk logs/app.log.bz2", {}),
])
# a checksum that does not verify: an integrity failure (category unknown, class security)
case("sha256sum", "sha256sum-mismatch", "unknown", "", [
    ({"a.txt": "x\n", "SUMS": "0000000000000000000000000000000000000000000000000000000000000000  a.txt\n"},
     "sha256sum -c SUMS", {}),
    ({"dist/app.tar": "y\n", "dist/SHA256SUMS": "1111111111111111111111111111111111111111111111111111111111111111  app.tar\n"},
     "cd dist && sha256sum -c SHA256SUMS", {}),
])
case("date", "date-invalid", "runtime_error", "", [
    ({}, "date -d 'not a date'", {}),
    ({}, "date -d '2024-13-45 25:61'", {}),
])
case("msgfmt", "msgfmt-syntax", "syntax_error", "", [
    ({"x.po": 'msgid "a"\nmsgstr "b\n'}, "msgfmt x.po", {}),
    ({"po/de.po": 'msgid "Hello"\nmsgstr "Hallo\n\nmsgid "Bye"\nmsgstr "Tschuess"\n'}, "msgfmt -o de.mo po/de.po", {}),
])


def run(files, cmd, tmp):
    for name, text in files.items():
        path = os.path.join(tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "PGCONNECT_TIMEOUT": "5", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "GIT_TERMINAL_PROMPT": "0"}
    shell = isinstance(cmd, str)
    p = subprocess.run(cmd, shell=shell, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def main():
    out = []
    n = 0
    for tool, group, category, key, variants, needs in CASES:
        if shutil.which(needs) is None:
            print(f"skipped {group}: {needs} is not installed", file=sys.stderr)
            continue
        for files, cmd, params in variants:
            with tempfile.TemporaryDirectory(prefix="helix-corpus-") as tmp:
                code, output = run(files, cmd, tmp)
            if code == 0:
                print(f"skipped a {group} case: it succeeded ({cmd})", file=sys.stderr)
                continue
            out.append({
                "id": f"u{n:03}",
                "tool": tool,
                "group": group,
                "category": category,
                "key": key.format(**params),
                "split": "heldout" if tool in HELDOUT else "dev",
                "command": cmd if isinstance(cmd, str) else " ".join(cmd),
                "exit_code": code,
                "output": output,
            })
            n += 1
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        for c in out:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    tools = sorted({c["tool"] for c in out})
    print(f"{len(out)} cases, {len({c['group'] for c in out})} groups, {len(tools)} tools: {', '.join(tools)}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
