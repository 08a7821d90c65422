#!/usr/bin/env bash
# Creates the package.json, project.json, tsconfig.json and vitest.config.ts of one project.
# usage: tools/scaffold-project.sh libs|apps <name>
set -euo pipefail
kind=$1; name=$2; dir=$kind/$name
mkdir -p "$dir/src"
[ -f "$dir/package.json" ] || cat > "$dir/package.json" <<JSON
{
  "name": "@coffer/$name",
  "version": "0.1.0",
  "private": true,
  "type": "module",
  "exports": { ".": "./src/index.ts" }
}
JSON
if [ "$kind" = apps ]; then build="node tools/build-app.mjs $name"; ptype=application; else build="tsc -p $dir/tsconfig.lib.json"; ptype=library; fi
cat > "$dir/project.json" <<JSON
{
  "name": "$name",
  "\$schema": "../../node_modules/nx/schemas/project-schema.json",
  "projectType": "$ptype",
  "sourceRoot": "$dir/src",
  "targets": {
    "build": { "executor": "nx:run-commands", "options": { "command": "$build" } },
    "typecheck": { "executor": "nx:run-commands", "options": { "command": "tsc -p $dir/tsconfig.json" } },
    "lint": { "executor": "nx:run-commands", "options": { "command": "eslint $dir" } },
    "test": { "executor": "nx:run-commands", "options": { "command": "vitest run", "cwd": "$dir" } }
  }
}
JSON
cat > "$dir/tsconfig.json" <<JSON
{
  "extends": "../../tsconfig.base.json",
  "include": ["src/**/*.ts", "test/**/*.ts", "vitest.config.ts"]
}
JSON
cat > "$dir/tsconfig.lib.json" <<JSON
{
  "extends": "../../tsconfig.base.json",
  "include": ["src/**/*.ts"],
  "exclude": ["src/**/*.test.ts"]
}
JSON
[ "$kind" = apps ] && rm -f "$dir/tsconfig.lib.json"
[ -f "$dir/vitest.config.ts" ] || cat > "$dir/vitest.config.ts" <<TS
import { projectConfig } from '../../vitest.shared.ts';

export default projectConfig();
TS
