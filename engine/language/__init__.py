"""The condition language: grammar -> syntax tree (parser, ast) -> type check (checker, facts, codes) ->
Python closures or generated code (compiler, codegen); logic and render read checked trees."""
