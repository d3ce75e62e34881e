// Type-aware lint for everything TypeScript in the repository (src, test, bench). Strict rules,
// with floating promises an error: a forgotten await in a daemon is a silent lost error.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', '**/*.js', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      // Numbers and booleans in log and error text are the point of those strings.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // `() => void run()` and `(x) => sink.push(x)` read well and hide nothing; nor does
      // `if (bad) return this.fail(...)` in a function that returns nothing (parsers, sessions).
      '@typescript-eslint/no-confusing-void-expression': [
        'error',
        { ignoreArrowShorthand: true, ignoreVoidReturningFunctions: true },
      ],
      // tsconfig has noUncheckedIndexedAccess: `parts[i]!` after a bounds check, `m[1]!` after a
      // regex matched and `map.get(k)!` after a set are how the code says "checked"; forbidding
      // `!` would only trade it for casts or dead branches.
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      // `let d: RunningDaemon` is set in beforeAll and `await d?.stop()` in afterAll guards a
      // set-up that failed before the assignment: the type cannot say so, the guard is needed.
      '@typescript-eslint/no-unnecessary-condition': 'off',
      // Tests compare parsed JSON replies with expect() and its asymmetric matchers
      // (expect.any, expect.stringMatching), which are typed any; the expectation is the check.
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
);
