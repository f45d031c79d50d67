// Runs a predicate over docs, with the guard's rule evaluator (service/sharing/crossing/rules.py)
// as its helpers, in a fresh V8 context: reads {helpers, predicate, docs} as JSON on stdin,
// prints the ids that pass.
const vm = require('vm');

let input = '';
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const { helpers, predicate, docs } = JSON.parse(input);
  const context = vm.createContext({ source: JSON.stringify(docs) });
  const passing = vm.runInContext(
    `${helpers}\nvar predicate = ${predicate};\n` +
      'JSON.parse(source).filter(function (doc) { return predicate(doc); })' +
      '.map(function (doc) { return doc._id; })',
    context,
  );
  process.stdout.write(JSON.stringify(Array.from(passing)));
});
