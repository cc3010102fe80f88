// A JSON value written as block YAML, for showing a workflow definition as
// its author would write it. Every string that YAML could read as anything
// else (a number, a boolean, null, a date, text with `:` or `#`, an empty
// string, several lines) is written in double quotes with JSON's escapes,
// which YAML reads back unchanged; so the text validates to the same
// definition.

const PLAIN = /^[A-Za-z_][A-Za-z0-9_.\/ (),'-]*$/;
const WORDS = /^(true|false|yes|no|on|off|y|n|null|nan|inf)$/i;

function str(v) {
  return PLAIN.test(v) && !WORDS.test(v) && !v.endsWith(" ") && !v.includes(" #") && !v.includes(": ")
    ? v
    : JSON.stringify(v);
}

function scalar(v) {
  if (v === null) return "null";
  if (typeof v === "string") return str(v);
  return String(v);
}

function isEmpty(v) {
  return (Array.isArray(v) && !v.length) || (v && typeof v === "object" && !Object.keys(v).length);
}

function block(v, indent, out) {
  const pad = " ".repeat(indent);
  if (Array.isArray(v)) {
    for (const x of v) {
      if (x && typeof x === "object" && !isEmpty(x)) {
        const inner = [];
        block(x, indent + 2, inner);
        // The first line of the item goes after its dash.
        out.push(`${pad}- ${inner[0].slice(indent + 2)}`, ...inner.slice(1));
      } else {
        out.push(`${pad}- ${isEmpty(x) ? JSON.stringify(x) : scalar(x)}`);
      }
    }
    return;
  }
  for (const [k, x] of Object.entries(v)) {
    if (x && typeof x === "object" && !isEmpty(x)) {
      out.push(`${pad}${str(k)}:`);
      block(x, indent + 2, out);
    } else {
      out.push(`${pad}${str(k)}: ${isEmpty(x) ? JSON.stringify(x) : scalar(x)}`);
    }
  }
}

/**
 * A workflow definition as YAML text; fields of the workflow and of its
 * steps that are null (unset), and empty dependency lists, are left out.
 */
export function toYaml(def) {
  const unset = (o) =>
    Object.fromEntries(Object.entries(o).filter(([k, y]) => y !== null && !(k === "dependencies" && isEmpty(y))));
  const v = unset(def);
  if (Array.isArray(v.steps)) v.steps = v.steps.map((st) => (st && typeof st === "object" ? unset(st) : st));
  const out = [];
  block(v, 0, out);
  return `${out.join("\n")}\n`;
}
