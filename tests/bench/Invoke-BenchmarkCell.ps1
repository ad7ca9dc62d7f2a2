<#
.SYNOPSIS
    One benchmark cell: boots a source and a destination VM, waits for the guest to dirty memory
    at a steady rate, migrates once, and writes the result as JSON.

.DESCRIPTION
    Invoke-MigrationBenchmark.ps1 runs this script inside a network namespace whose loopback is
    shaped with tc, so that both QEMUs, QEMU's own TCP (None, Native) and DeltaMigrate's tunnel
    TCP (Delta, Lz4) all cross the shaped link. It can also be run by hand (unshaped).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $Guest,
    [Parameter(Mandatory)] [string] $Append,
    [Parameter(Mandatory)] [ValidateSet('None', 'Native', 'Delta', 'Lz4')] [string] $Compress,
    [Parameter(Mandatory)] [string] $OutFile,
    [long] $CacheSize = 0,
    [double] $Timeout = 120,
    [ValidateSet('Cancel', 'Pause')] [string] $TimeoutAction = 'Cancel',
    [double] $MaxDowntime = 0.3,
    [long] $Memory = 512MB,
    [int] $WarmupHeartbeats = 20,
    [string] $Machine = 'pc-i440fx-7.2'
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Import-Module $ModulePath -Force

$runDir = Join-Path ([IO.Path]::GetTempPath()) "dm-bench-$([guid]::NewGuid().ToString('n').Substring(0, 8))"
New-Item -ItemType Directory $runDir | Out-Null
$env:DELTAMIGRATE_RUNDIR = $runDir

function Wait-Until([scriptblock] $Condition, [string] $What, [int] $TimeoutSeconds = 180) {
    $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutSeconds)
    while (-not (& $Condition)) {
        if ([DateTime]::UtcNow -gt $deadline) { throw "Timed out after $TimeoutSeconds s waiting for $What" }
        Start-Sleep -Milliseconds 200
    }
}

function Get-Heartbeats([string] $SerialLog) {
    # Every heartbeat line as (hb, dirtied, rate).
    if (-not (Test-Path $SerialLog)) { return @() }
    foreach ($m in (Select-String -Path $SerialLog -Pattern '^DMGUEST hb (\d+) dirtied=(\d+) rate=(\d+)')) {
        $g = $m.Matches[0].Groups
        [pscustomobject]@{ Hb = [long]$g[1].Value; Dirtied = [long]$g[2].Value; Rate = [long]$g[3].Value }
    }
}

function Get-RateBetween($From, $To) {
    # Pages/s between two heartbeats (heartbeats are 100 ms of guest time apart).
    if (-not $From -or -not $To -or $To.Hb -le $From.Hb) { return $null }
    [math]::Round(($To.Dirtied - $From.Dirtied) / (($To.Hb - $From.Hb) * 0.1))
}

$cell = [ordered]@{
    Append = $Append; Compress = $Compress; CacheSize = $CacheSize; Timeout = $Timeout
    TimeoutAction = $TimeoutAction; MaxDowntime = $MaxDowntime; StartedUtc = [DateTime]::UtcNow.ToString('o')
}
try {
    $src = Start-KvmVM -Name s -Memory $Memory -Kernel $Guest -Append $Append -Accelerator Tcg -Machine $Machine
    $null = Start-KvmVM -Name d -Memory $Memory -Kernel $Guest -Append 'ws=1' -Accelerator Tcg -Machine $Machine -Incoming
    $fillWatch = [Diagnostics.Stopwatch]::StartNew()
    Wait-Until { Select-String -Path $src.SerialLog -Pattern '^DMGUEST ready' -Quiet } 'the guest to fill its working set'
    $cell.FillSeconds = [math]::Round($fillWatch.Elapsed.TotalSeconds, 1)
    $ready = (Select-String -Path $src.SerialLog -Pattern '^DMGUEST ready.*' | Select-Object -First 1).Line.Trim()
    $cell.GuestReady = $ready
    # A few heartbeats so the dirty rate is steady; the warm-up rate is measured over them.
    Wait-Until { @(Get-Heartbeats $src.SerialLog).Count -ge $WarmupHeartbeats } "$WarmupHeartbeats heartbeats"
    $before = @(Get-Heartbeats $src.SerialLog)
    $first = $before[[math]::Max(0, $before.Count - 10)]   # the last ~second before migrating
    $last = $before[-1]
    $cell.GuestRateBefore = Get-RateBetween $first $last
    $cell.GuestRateBeforeLine = ($before[-1] | ForEach-Object { "hb $($_.Hb) dirtied=$($_.Dirtied) rate=$($_.Rate)" })

    $move = @{
        Name = 's'; Destination = 'd'; Compress = $Compress; MaxDowntime = $MaxDowntime
        Timeout = $Timeout; TimeoutAction = $TimeoutAction; PassThru = $true
    }
    if ($CacheSize -gt 0) { $move.CacheSize = $CacheSize }
    $errs = $null
    $moveWatch = [Diagnostics.Stopwatch]::StartNew()
    $result = Move-KvmVM @move -ErrorAction SilentlyContinue -ErrorVariable errs -Confirm:$false
    if (-not $result -and $errs) {
        $e = $errs | Select-Object -First 1
        $cell.ErrorId = $e.FullyQualifiedErrorId
        $cell.ErrorMessage = $e.Exception.Message
        if ($e.TargetObject -and $e.TargetObject.PSObject.Properties['Status']) { $result = $e.TargetObject }
    }
    elseif ($errs) {
        $cell.ErrorId = ($errs | Select-Object -First 1).FullyQualifiedErrorId
        $cell.ErrorMessage = ($errs | Select-Object -First 1).Exception.Message
    }

    # Our own clock around Move-KvmVM (preflight and teardown included), as a cross-check of TotalTime.
    $cell.MoveSeconds = [math]::Round($moveWatch.Elapsed.TotalSeconds, 2)

    # The guest's achieved rate during the migration: from the last pre-migration heartbeat to the
    # last heartbeat the source printed (the source stops at the final copy or after cancel).
    Start-Sleep -Milliseconds 300
    $after = @(Get-Heartbeats $src.SerialLog)
    $cell.GuestRateDuring = Get-RateBetween $last $after[-1]
    $cell.GuestRateMinDuring = ($after | Where-Object Hb -GT $last.Hb | Measure-Object Rate -Minimum).Minimum

    if ($result) {
        $r = $result
        $c = $r.Compression
        $cell.Status = "$($r.Status)"
        $cell.Converged = $r.Converged
        $cell.TimedOut = $r.TimedOut
        $cell.TotalSeconds = [math]::Round(([TimeSpan]$r.TotalTime).TotalSeconds, 2)
        $cell.DowntimeMs = if ($null -ne $r.Downtime) { [math]::Round(([TimeSpan]$r.Downtime).TotalMilliseconds, 1) } else { $null }
        $cell.WireMiB = [math]::Round($r.BytesTransferred / 1MB, 1)
        $cell.StreamMiB = [math]::Round($r.StreamBytes / 1MB, 1)
        $cell.DirtySyncCount = $r.DirtySyncCount
        $cell.RoundsRecorded = @($r.Rounds).Count
        $cell.DestinationState = "$($r.DestinationState)"
        $cell.SourceState = "$($r.SourceState)"
        if ($c) {
            $cell.Compression = [ordered]@{
                CacheSize = $c.CacheSize; XbzrlePages = $c.XbzrlePages; UnchangedPages = $c.UnchangedPages
                RawPages = $c.RawPages; CacheHits = $c.CacheHits; CacheMisses = $c.CacheMisses
                Overflows = $c.Overflows; EncodedBytes = $c.EncodedBytes; WireBytes = $c.WireBytes
                StreamBytes = $c.StreamBytes; CompressionRatio = $c.CompressionRatio
                EncodeTime = "$($c.EncodeTime)"; CompressTime = "$($c.CompressTime)"
            }
        }
        $cell.Rounds = @($r.Rounds | ForEach-Object {
                [ordered]@{
                    Round = $_.Round; Elapsed = [math]::Round(([TimeSpan]$_.Elapsed).TotalSeconds, 2)
                    StreamMiB = [math]::Round($_.BytesTransferred / 1MB, 1); RemainingMiB = [math]::Round($_.BytesRemaining / 1MB, 1)
                    WireMiB = [math]::Round($_.WireBytes / 1MB, 1); DirtyPagesRate = $_.DirtyPagesRate
                    XbzrlePages = $_.XbzrlePages; CacheHits = $_.CacheHits
                }
            })
        # The full object too, for whoever wants to look closer (not committed).
        $r | ConvertTo-Json -Depth 4 | Set-Content -Path ([IO.Path]::ChangeExtension($OutFile, '.full.json'))
    }
}
catch {
    $cell.HarnessError = "$($_.Exception.Message) at $($_.InvocationInfo.PositionMessage)"
}
finally {
    $cell.FinishedUtc = [DateTime]::UtcNow.ToString('o')
    $cell | ConvertTo-Json -Depth 5 | Set-Content -Path $OutFile
    Get-KvmVM -ErrorAction Ignore | Stop-KvmVM -Force -Confirm:$false -ErrorAction Ignore
    Remove-Item -Recurse -Force $runDir -ErrorAction Ignore
}
