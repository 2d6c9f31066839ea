# Block design + bitstream for one board (run by `make BOARD=<board> overlay`):
#   PS + per core (int4, int8): AXI DMA (simple mode) -> ohq_conv -> same DMA; AXI4-Lite of the
#   cores and DMAs on the PS general-purpose master; DMA data masters on one HP port; interrupts
#   concatenated to the PS. Writes build/overlay_<board>/ohq.bit and ohq.hwh.
# Arguments: <board> <boards.json>. Board facts come from ohq_pynq/hw/boards.json (via
# vivado/tools/board_tcl.py, which turns one entry into Tcl variables).
set board [lindex $argv 0]
set boards_json [lindex $argv 1]
set here [file dirname [file normalize [info script]]]
set root [file dirname $here]
set out $root/build/overlay_$board
file mkdir $out
exec python3 $root/tools/board_tcl.py $boards_json $board > $out/board.tcl
source $out/board.tcl   ;# part board_part ps fclk_mhz bus_bytes core_params(4|8)

create_project -force ohq_$board $out/proj -part $part
if {$board_part ne ""} { set_property board_part $board_part [current_project] }
set_property ip_repo_paths [list $root/build/ip] [current_project]
update_ip_catalog
create_bd_design ohq

if {$ps eq "zynq"} {
    set ps_cell [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7 ps]
    apply_bd_automation -rule xilinx.com:bd_rule:processing_system7 \
        -config {make_external "FIXED_IO, DDR" apply_board_preset "1"} $ps_cell
    set_property -dict [list CONFIG.PCW_USE_S_AXI_HP0 1 CONFIG.PCW_S_AXI_HP0_DATA_WIDTH 64 \
        CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ $fclk_mhz CONFIG.PCW_USE_FABRIC_INTERRUPT 1 \
        CONFIG.PCW_IRQ_F2P_INTR 1] $ps_cell
    set gp_master /ps/M_AXI_GP0
    set hp_slave /ps/S_AXI_HP0
    set irq_pin ps/IRQ_F2P
} else {
    set ps_cell [create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e ps]
    apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {apply_board_preset "1"} $ps_cell
    set_property -dict [list CONFIG.PSU__USE__M_AXI_GP0 1 CONFIG.PSU__USE__M_AXI_GP1 0 \
        CONFIG.PSU__USE__S_AXI_GP2 1 CONFIG.PSU__SAXIGP2__DATA_WIDTH [expr {8 * $bus_bytes}] \
        CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $fclk_mhz CONFIG.PSU__USE__IRQ0 1] $ps_cell
    set gp_master /ps/M_AXI_HPM0_FPD
    set hp_slave /ps/S_AXI_HP0_FPD
    set irq_pin ps/pl_ps_irq0
}

set irq [create_bd_cell -type ip -vlnv xilinx.com:ip:xlconcat irq_concat]
set_property CONFIG.NUM_PORTS 6 $irq
set port 0
foreach bits {4 8} {
    set core [create_bd_cell -type ip -vlnv ohq-pynq:ohq:ohq_conv:1.0 ohq_int$bits]
    set cfg [list CONFIG.BITS $bits CONFIG.BUS_BYTES $bus_bytes]
    foreach {k v} $core_params($bits) { lappend cfg CONFIG.$k $v }
    set_property -dict $cfg $core
    set dma [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma dma_int$bits]
    set w [expr {8 * $bus_bytes}]
    set_property -dict [list CONFIG.c_include_sg 0 CONFIG.c_sg_length_width 26 \
        CONFIG.c_m_axi_mm2s_data_width $w CONFIG.c_m_axis_mm2s_tdata_width $w \
        CONFIG.c_m_axi_s2mm_data_width $w CONFIG.c_s_axis_s2mm_tdata_width $w \
        CONFIG.c_mm2s_burst_size 64 CONFIG.c_s2mm_burst_size 64] $dma
    connect_bd_intf_net [get_bd_intf_pins dma_int$bits/M_AXIS_MM2S] [get_bd_intf_pins ohq_int$bits/s_axis]
    connect_bd_intf_net [get_bd_intf_pins ohq_int$bits/m_axis] [get_bd_intf_pins dma_int$bits/S_AXIS_S2MM]
    foreach pin [list ohq_int$bits/interrupt dma_int$bits/mm2s_introut dma_int$bits/s2mm_introut] {
        connect_bd_net [get_bd_pins $pin] [get_bd_pins irq_concat/In$port]
        incr port
    }
}
foreach s {ohq_int4/s_axi_control ohq_int8/s_axi_control dma_int4/S_AXI_LITE dma_int8/S_AXI_LITE} {
    apply_bd_automation -rule xilinx.com:bd_rule:axi4 \
        -config [list Master $gp_master Clk Auto] [get_bd_intf_pins $s]
}
foreach m {dma_int4/M_AXI_MM2S dma_int4/M_AXI_S2MM dma_int8/M_AXI_MM2S dma_int8/M_AXI_S2MM} {
    apply_bd_automation -rule xilinx.com:bd_rule:axi4 \
        -config [list Slave $hp_slave Clk Auto] [get_bd_intf_pins $m]
}
connect_bd_net [get_bd_pins irq_concat/dout] [get_bd_pins $irq_pin]
assign_bd_address
validate_bd_design
save_bd_design

set bd [get_files ohq.bd]
make_wrapper -files $bd -top
add_files -norecurse [file join [file dirname $bd] hdl ohq_wrapper.v]
set_property top ohq_wrapper [current_fileset]
launch_runs impl_1 -to_step write_bitstream -jobs 4
wait_on_run impl_1
if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} { error "implementation failed for $board" }
file copy -force [file join [get_property DIRECTORY [get_runs impl_1]] ohq_wrapper.bit] $out/ohq.bit
file copy -force [lindex [get_files -of_objects $bd -filter {FILE_TYPE == "Hardware Handoff"}] 0] $out/ohq.hwh
puts "wrote $out/ohq.bit and $out/ohq.hwh"
