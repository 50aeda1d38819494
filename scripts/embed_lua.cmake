# Turns each daemon/lua/NAME.lua into `const char clv_lua_NAME[]` in OUT.
set(body "/* Generated from the daemon/lua scripts; do not edit. */\n")
foreach(f ${SCRIPTS})
  get_filename_component(name ${f} NAME_WE)
  file(READ ${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(APPEND body "const char clv_lua_${name}[] = {${hex}0x00};\n")
endforeach()
file(WRITE ${OUT} "${body}")
