// Every optional field of the package's public types, as installed (its declarations), takes
// `undefined` (`?: T | undefined`): a service compiled with exactOptionalPropertyTypes passes
// `process.env.X` or a request's optional field as it is. Walks what both entries export, through
// parameters, results and fields, and names each optional field typed without `undefined`.
const ts = require('typescript');
const path = require('node:path');

const root = path.dirname(require.resolve('@kennwilliamson/db/package.json'));
const entries = ['dist/src/index.d.ts', 'dist/src/operations/index.d.ts'].map((entry) => path.join(root, entry));
const program = ts.createProgram(entries, { strict: true, exactOptionalPropertyTypes: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, skipLibCheck: true });
const checker = program.getTypeChecker();
const ours = (node) => node.getSourceFile().fileName.startsWith(path.join(root, 'dist') + path.sep);
const admitsUndefined = (type) =>
  [ts.SyntaxKind.UndefinedKeyword, ts.SyntaxKind.AnyKeyword, ts.SyntaxKind.UnknownKeyword].includes(type.kind) ||
  (ts.isUnionTypeNode(type) && type.types.some(admitsUndefined)) ||
  (ts.isParenthesizedTypeNode(type) && admitsUndefined(type.type));

const seen = new Set();
const refused = new Set();
let fields = 0;
function visit(type, depth) {
  if (!type || depth > 8 || seen.has(type)) return;
  seen.add(type);
  if (type.isUnion() || type.isIntersection()) return type.types.forEach((member) => visit(member, depth));
  // What a type is made of: a query function's parameters come as a tuple (`...args: A`), its
  // results as a Promise or an array, a page's items as an array.
  if (type.flags & ts.TypeFlags.Object && type.objectFlags & ts.ObjectFlags.Reference) checker.getTypeArguments(type).forEach((argument) => visit(argument, depth + 1));
  (type.aliasTypeArguments ?? []).forEach((argument) => visit(argument, depth + 1));
  for (const index of checker.getIndexInfosOfType(type)) visit(index.type, depth + 1);
  for (const signature of [...type.getCallSignatures(), ...type.getConstructSignatures()]) {
    for (const parameter of signature.getParameters()) visit(checker.getTypeOfSymbolAtLocation(parameter, parameter.valueDeclaration), depth + 1);
    visit(signature.getReturnType(), depth + 1);
  }
  // A mapped type that makes its members optional (`{ [K in keyof X]?: X[K] | undefined }`,
  // or lib's Partial) says so once, in its template.
  if (type.flags & ts.TypeFlags.Object && type.objectFlags & ts.ObjectFlags.Mapped) {
    const mapped = type.symbol?.declarations?.find(ts.isMappedTypeNode);
    if (mapped?.questionToken && mapped.questionToken.kind !== ts.SyntaxKind.MinusToken && mapped.type) {
      fields += 1;
      if (!admitsUndefined(mapped.type)) {
        const { line } = mapped.getSourceFile().getLineAndCharacterOfPosition(mapped.getStart());
        refused.add(`${checker.typeToString(type)}: ${path.relative(root, mapped.getSourceFile().fileName)}:${line + 1} { [${mapped.typeParameter.getText()}]?: ${mapped.type.getText()} }`);
      }
    }
  }
  if (!(type.getSymbol()?.declarations ?? []).some(ours) && !type.isClassOrInterface() && !(type.flags & ts.TypeFlags.Object)) return;
  for (const property of type.getProperties()) {
    const declaration = property.valueDeclaration;
    if (!declaration || !ours(declaration)) continue;
    if (ts.isPropertySignature(declaration) && declaration.questionToken && declaration.type) {
      fields += 1;
      if (!admitsUndefined(declaration.type)) {
        const { line } = declaration.getSourceFile().getLineAndCharacterOfPosition(declaration.getStart());
        refused.add(`${path.relative(root, declaration.getSourceFile().fileName)}:${line + 1} ${property.name}?: ${declaration.type.getText()}`);
      }
    }
    visit(checker.getTypeOfSymbolAtLocation(property, declaration), depth + 1);
  }
}
for (const entry of entries) {
  for (const exported of checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(entry)))) {
    const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    const declaration = symbol.valueDeclaration ?? symbol.declarations?.[0];
    if (!declaration) continue;
    visit(symbol.flags & ts.SymbolFlags.Value ? checker.getTypeOfSymbolAtLocation(symbol, declaration) : checker.getDeclaredTypeOfSymbol(symbol), 0);
  }
}
if (fields < 130) throw new Error(`only ${fields} optional fields found in the package's public types: the walk missed them`);
if (refused.size > 0) {
  console.error(`optional fields that refuse undefined under exactOptionalPropertyTypes:\n${[...refused].sort().join('\n')}`);
  process.exit(1);
}
console.log(`optional fields: all ${fields} take undefined: ok`);
