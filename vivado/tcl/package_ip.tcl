# Package vivado/rtl as the IP ohq-pynq:ohq:ohq_conv:1.0 into vivado/build/ip (run by `make ip`;
# $OHQ_BUILD: another build folder).
# Bus interfaces are inferred from the port names: s_axi_control (AXI4-Lite), s_axis / m_axis
# (AXI4-Stream), ap_clk, ap_rst_n, interrupt. What the block design relies on is then stated
# explicitly rather than left to inference: ap_rst_n is an active-low reset associated with
# ap_clk, every bus interface is clocked by ap_clk, and the AXI4-Lite slave has the memory map
# s_axi_control / address block reg0 that build_overlay.tcl addresses (ohq_int<bits>/s_axi_control/reg0).
set here [file dirname [file normalize [info script]]]
set root [file dirname $here]
set build [expr {[info exists ::env(OHQ_BUILD)] ? $::env(OHQ_BUILD) : "$root/build"}]
set ipdir $build/ip

create_project -force ohq_ip $build/ip_project -part xc7z020clg400-1
add_files [glob $root/rtl/*.v]
add_files $root/rtl/ohq_regmap.vh
set_property file_type {Verilog Header} [get_files ohq_regmap.vh]
set_property top ohq_conv [current_fileset]
update_compile_order -fileset sources_1

ipx::package_project -root_dir $ipdir -vendor ohq-pynq -library ohq -taxonomy /UserIP \
    -import_files -set_current true
set core [ipx::current_core]
set_property name ohq_conv $core
set_property version 1.0 $core
set_property display_name {ohq-pynq int4/int8 conv core} $core
set_property description {Quantized conv layer core: AXI4-Stream in/out, ap_ctrl_hs AXI4-Lite, cycle counters} $core
set_property vendor_display_name {ohq-pynq} $core
set_property supported_families {zynq Production zynquplus Production} $core

# Reset: ap_rst_n, active low (the RTL resets on ap_rst_n == 0).
set rst [ipx::get_bus_interfaces ap_rst_n -of_objects $core]
if {$rst eq ""} {
    set rst [ipx::add_bus_interface ap_rst_n $core]
    set_property abstraction_type_vlnv xilinx.com:signal:reset_rtl:1.0 $rst
    set_property bus_type_vlnv xilinx.com:signal:reset:1.0 $rst
    set_property interface_mode slave $rst
    ipx::add_port_map RST $rst
    set_property physical_name ap_rst_n [ipx::get_port_maps RST -of_objects $rst]
}
set polarity [ipx::get_bus_parameters POLARITY -of_objects $rst]
if {$polarity eq ""} { set polarity [ipx::add_bus_parameter POLARITY $rst] }
set_property value ACTIVE_LOW $polarity

# Clock domain: every bus interface and the reset on ap_clk.
foreach busif {s_axi_control s_axis m_axis} {
    ipx::associate_bus_interfaces -busif $busif -clock ap_clk $core
}
ipx::associate_bus_interfaces -clock ap_clk -reset ap_rst_n $core

# AXI4-Lite address space: memory map s_axi_control, block reg0 of 2^8 bytes (regmap ADDR_BITS).
set lite [ipx::get_bus_interfaces s_axi_control -of_objects $core]
set mm [ipx::get_memory_maps s_axi_control -of_objects $core]
if {$mm eq ""} { set mm [ipx::add_memory_map s_axi_control $core] }
set_property slave_memory_map_ref s_axi_control $lite
set block [ipx::get_address_blocks reg0 -of_objects $mm]
if {$block eq ""} { set block [ipx::add_address_block reg0 $mm] }
set_property range 256 $block
set_property width 32 $block
set_property usage register $block

ipx::create_xgui_files $core
ipx::update_checksums $core
ipx::check_integrity $core
ipx::save_core $core
close_project
puts "packaged ohq-pynq:ohq:ohq_conv:1.0 in $ipdir"
