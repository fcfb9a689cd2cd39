"""Writes report.json: what the pipeline built (checked by a json_schema gate)."""

import json
import sys

import app

json.dump({"ok": True, "defaults": app.load(""), "python": sys.version.split()[0]}, open("report.json", "w"))
print("report.json written")
