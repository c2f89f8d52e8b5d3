// Prints a raw AST back as hast.conf text (used by the round-trip property test and by tools that
// rewrite a configuration). Every value is a single word, so no quoting is ever needed.
import type { ConfigAst, OnBlock, ResourceBlock, Statement } from './parser.js';

function stmt(st: Statement, indent: string): string {
  return `${indent}${st.keyword} ${st.value}\n`;
}

function on(block: OnBlock, indent: string): string {
  return `${indent}on ${block.node} {\n${block.body.map((s) => stmt(s, `${indent}\t`)).join('')}${indent}}\n`;
}

function resource(block: ResourceBlock): string {
  const body = block.body.map((e) => (e.kind === 'stmt' ? stmt(e, '\t') : on(e, '\t'))).join('');
  return `resource ${block.name} {\n${body}}\n`;
}

/** hast.conf text for `ast`; parseAst(printConfig(ast)) gives back the same statements. */
export function printConfig(ast: ConfigAst): string {
  return ast.body.map((e) => (e.kind === 'stmt' ? stmt(e, '') : e.kind === 'on' ? on(e, '') : resource(e))).join('');
}
