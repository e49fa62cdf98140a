#!/usr/bin/env node
// Guards the layering of ARCHITECTURE.md: arrows point down only, nothing reaches into another
// package's files, and nothing imports apps/. Fails with the offending file and import.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** Which workspace packages each package may import (at run time or as types). */
const allowed = {
  '@broker/codec': [],
  '@broker/transport': [],
  '@broker/core': ['@broker/codec'],
  '@broker/persistence': ['@broker/core', '@broker/codec'],
  '@broker/app': ['@broker/codec', '@broker/transport', '@broker/core', '@broker/persistence'],
  '@broker/bench': [
    '@broker/codec',
    '@broker/transport',
    '@broker/core',
    '@broker/persistence',
    '@broker/app',
  ],
};

/** Extra packages a package's tests and benchmarks may use (never its src/). */
const testOnly = {
  '@broker/persistence': ['@broker/transport'],
};

function* files(dir) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* files(path);
    else if (/\.(ts|mts|js|mjs)$/.test(name)) yield path;
  }
}

const problems = [];
for (const group of ['packages', 'apps']) {
  let names = [];
  try {
    names = readdirSync(join(root, group));
  } catch {
    continue;
  }
  for (const name of names) {
    const pkgDir = join(root, group, name);
    let pkg;
    try {
      pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
    } catch {
      continue;
    }
    const mayImport = allowed[pkg.name];
    if (!mayImport) {
      problems.push(
        `${pkg.name}: not listed in scripts/check-deps.mjs; add it with the packages it may import`,
      );
      continue;
    }
    for (const file of files(pkgDir)) {
      const text = readFileSync(file, 'utf8');
      for (const match of text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)) {
        const spec = match[1];
        const where = relative(root, file);
        if (spec.startsWith('.')) {
          const target = resolve(dirname(file), spec);
          if (!target.startsWith(`${pkgDir}/`) && !target.endsWith('vitest.shared.ts')) {
            problems.push(`${where}: '${spec}' reaches outside its package`);
          }
        } else if (spec.startsWith('@broker/')) {
          const [scope, base, ...sub] = spec.split('/');
          const target = `${scope}/${base}`;
          if (target === pkg.name) continue;
          // Tests may drive a package with its siblings (a crash test needs a real listener);
          // shipped source may not.
          const isTest = /\/(test|bench)\//.test(file);
          const mayUse = isTest ? [...mayImport, ...(testOnly[pkg.name] ?? [])] : mayImport;
          if (!mayUse.includes(target)) problems.push(`${where}: ${pkg.name} may not import ${target}`);
          if (sub[0] === 'src' || sub[0] === 'dist')
            problems.push(`${where}: '${spec}' reaches into another package's files`);
        }
      }
    }
  }
}
if (problems.length > 0) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log('layering: ok');
