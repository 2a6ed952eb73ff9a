// Lint of storage/openapi.yaml (ctest: storage.openapi).
//
//   node tests/openapi-lint.mjs storage/openapi.yaml storage/api/api.c
//
// 1. @apidevtools/swagger-parser validates it against the OpenAPI schema and
//    resolves every $ref.
// 2. House rules the schema cannot say: every operation has an operationId,
//    a summary and a tag; says 401 and 429 (the API authenticates and rate
//    limits everything); describes every error as the {error} object; path
//    parameters use the shared definitions' names.
// 3. The spec and the server agree: the (method, path) pairs of the route
//    table in storage/api/api.c are exactly the spec's operations.
// Exits 1 listing every problem found.

import SwaggerParser from '@apidevtools/swagger-parser';
import { readFileSync } from 'node:fs';

const [specPath, apiPath] = process.argv.slice(2);
if (!specPath || !apiPath) {
  console.error('usage: openapi-lint.mjs OPENAPI.yaml API.c');
  process.exit(2);
}

const problems = [];
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

let spec;
try {
  // validate() dereferences a copy; keep the raw one for the $ref checks
  await SwaggerParser.validate(specPath);
  spec = await SwaggerParser.parse(specPath);
} catch (err) {
  console.error(`${specPath}: not a valid OpenAPI description:\n${err.message}`);
  process.exit(1);
}

const resolve = (obj) => {
  let o = obj;
  for (let i = 0; o && o.$ref && i < 10; i++) {
    const parts = o.$ref.replace(/^#\//, '').split('/');
    o = parts.reduce((x, k) => x?.[k.replace(/~1/g, '/').replace(/~0/g, '~')], spec);
  }
  return o;
};

const ops = new Set();
const ids = new Set();
for (const [path, item] of Object.entries(spec.paths)) {
  if (!path.startsWith('/api/')) problems.push(`${path}: paths are served under /api/ only`);
  for (const method of METHODS) {
    const op = item[method];
    if (!op) continue;
    const where = `${method.toUpperCase()} ${path}`;
    ops.add(where);
    if (!op.operationId) problems.push(`${where}: no operationId`);
    else if (ids.has(op.operationId)) problems.push(`${where}: operationId ${op.operationId} used twice`);
    else ids.add(op.operationId);
    if (!op.summary) problems.push(`${where}: no summary`);
    if (!op.tags?.length) problems.push(`${where}: no tag`);
    const codes = Object.keys(op.responses ?? {});
    if (!codes.some((c) => /^2\d\d$/.test(c))) problems.push(`${where}: no 2xx response`);
    const secured = (op.security ?? spec.security ?? []).length > 0;
    if (secured && !codes.includes('401')) problems.push(`${where}: authenticated but no 401`);
    if (secured && !codes.includes('429')) problems.push(`${where}: rate limited but no 429`);
    if (op.requestBody && !codes.includes('400')) problems.push(`${where}: takes a body but no 400`);
    if (op.requestBody && !codes.includes('413')) problems.push(`${where}: takes a body but no 413`);
    for (const code of codes) {
      if (!/^[45]\d\d$/.test(code)) continue;
      const res = resolve(op.responses[code]);
      const schema = res?.content?.['application/json']?.schema;
      if (schema?.$ref !== '#/components/schemas/Error') {
        problems.push(`${where}: response ${code} is not described as the Error object`);
      }
    }
    const params = [...(item.parameters ?? []), ...(op.parameters ?? [])].map(resolve);
    for (const name of path.match(/\{[^}]+\}/g) ?? []) {
      const p = params.find((x) => x.in === 'path' && `{${x.name}}` === name);
      if (!p) problems.push(`${where}: path parameter ${name} is not declared`);
    }
  }
}

// The route table of the server: {EVHTTP_REQ_GET, "/api/...", ...}
const source = readFileSync(apiPath, 'utf8');
const routes = new Set();
for (const m of source.matchAll(/\{\s*EVHTTP_REQ_([A-Z]+)\s*,\s*"(\/api\/[^"]*)"/g)) {
  routes.add(`${m[1]} ${m[2]}`);
}
if (routes.size === 0) problems.push(`${apiPath}: no route table found`);
for (const r of routes) if (!ops.has(r)) problems.push(`${apiPath} serves ${r}, which the spec does not describe`);
for (const o of ops) if (!routes.has(o)) problems.push(`the spec describes ${o}, which ${apiPath} does not serve`);

if (problems.length) {
  console.error(`${specPath}: ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log(`${specPath}: valid OpenAPI ${spec.openapi}, ${ops.size} operations, matching ${apiPath}`);
