<#
.SYNOPSIS
    Two local VMs, one live migration while the guest dirties memory, and the result.
    Run through `dotnet pwsh ./build.ps1 demo`, which builds the module and the test guest first.
#>
$ErrorActionPreference = 'Stop'
$root = Resolve-Path "$PSScriptRoot/.."
Import-Module (Join-Path $root 'DeltaMigrate.psd1')
$guest = Join-Path $root 'tests/guest/out/guest.elf'
$env:DELTAMIGRATE_RUNDIR = Join-Path ([IO.Path]::GetTempPath()) "deltamigrate-demo-$PID"

# 256 MiB VM; the guest fills 128 MiB with random data, then rewrites 16 bytes in each of
# 3,000 pages a second across a 16 MiB hot set, printing a heartbeat on its serial port.
$workload = 'ws=128 hot=16 rate=3000 bytes=16 pattern=scatter fill=random'
$common = @{ Memory = 256MB; Kernel = $guest; Append = $workload; Accelerator = 'Tcg'; Machine = 'pc-i440fx-7.2' }
try {
    Write-Host 'Starting the source VM (demo-src) and a VM waiting for it (demo-dst)...'
    $src = Start-KvmVM -Name demo-src @common
    $dst = Start-KvmVM -Name demo-dst @common -Incoming
    while (-not (Select-String -Path $src.SerialLog -Pattern '^DMGUEST hb' -Quiet)) { Start-Sleep -Milliseconds 200 }
    Get-KvmVM | Format-Table | Out-Host

    Write-Host 'Live-migrating demo-src to demo-dst with delta compression (XBZRLE + LZ4 through our tunnel), 200 Mbit/s budget...'
    $result = Move-KvmVM -Name demo-src -Destination $dst -Compress Delta -Bandwidth 25MB -PassThru
    $result | Format-Table | Out-Host
    $result | Select-Object Status, TotalTime, Downtime, SetupTime, DirtySyncCount, Converged,
        @{ n = 'StreamMiB'; e = { [math]::Round($_.StreamBytes / 1MB, 1) } },
        @{ n = 'WireMiB'; e = { [math]::Round($_.BytesTransferred / 1MB, 1) } } | Format-List | Out-Host
    $result.Compression | Select-Object CacheSize, CacheHits, CacheMisses, RawPages, XbzrlePages, UnchangedPages, ZeroPages,
        EncodedBytes, Overflows, CompressionRatio, EncodeTime | Format-List | Out-Host
    $result.Rounds | Format-Table Round, Elapsed, Duration, BytesRemaining, StreamBytes, SentBytes, RawPages, XbzrlePages, UnchangedPages | Out-Host

    $beat = (Select-String -Path $dst.SerialLog -Pattern '^DMGUEST hb (\d+)' | Select-Object -Last 1).Line
    Write-Host "demo-dst is $((Get-KvmVM demo-dst).State); its guest's last heartbeat: $beat"
}
finally {
    Get-KvmVM -ErrorAction Ignore | Stop-KvmVM -Force -Confirm:$false -ErrorAction Ignore
    Remove-Item -Recurse -Force $env:DELTAMIGRATE_RUNDIR -ErrorAction Ignore
}
