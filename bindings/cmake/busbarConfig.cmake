# find_package(busbar CONFIG): the busbar C library installed by
# scripts/install-c.sh. Targets:
#   busbar::busbar  the shared library (libbusbar.so.0), with busbar.h and busbar.hpp
#   busbar::static  the static library (libbusbar.a) and what it needs from the system
# This file lives in <prefix>/lib/cmake/busbar/, so the prefix is three levels up.
include(CMakeFindDependencyMacro)
find_dependency(Threads)

get_filename_component(_busbar_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

if(NOT TARGET busbar::busbar)
  add_library(busbar::busbar SHARED IMPORTED)
  set_target_properties(busbar::busbar PROPERTIES
    IMPORTED_LOCATION "${_busbar_prefix}/lib/libbusbar.so.0"
    IMPORTED_SONAME "libbusbar.so.0"
    INTERFACE_INCLUDE_DIRECTORIES "${_busbar_prefix}/include")
endif()

if(NOT TARGET busbar::static)
  add_library(busbar::static STATIC IMPORTED)
  set_target_properties(busbar::static PROPERTIES
    IMPORTED_LOCATION "${_busbar_prefix}/lib/libbusbar.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_busbar_prefix}/include"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;m;rt;dl;util;gcc_s")
endif()

unset(_busbar_prefix)
set(busbar_FOUND TRUE)
