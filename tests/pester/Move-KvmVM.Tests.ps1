# Live migrations between real QEMU processes (TCG) while the test guest dirties memory.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    Import-Module $ModuleUnderTest -Force
    $script:RunDir = Initialize-TestRunDirectory
    # Slow enough that a migration takes several rounds, and XBZRLE sees pages again.
    $script:Slow = @{ Bandwidth = 20MB; MaxDowntime = 0.05; KeepSource = $true }   # kept: RAM is compared afterwards

    function Start-InBackground([string] $Script) {
        # Another runspace of this process, with the module loaded: for work that must run
        # while the test thread is blocked in Move-KvmVM, or that the test must stop.
        $ps = [powershell]::Create()
        $null = $ps.AddScript("Import-Module '$ModuleUnderTest'; $Script")
        [pscustomobject]@{ PowerShell = $ps; Handle = $ps.BeginInvoke() }
    }

    function Get-MigrationTransferred([string] $Name) {
        $info = Invoke-KvmQmp -Name $Name -Command query-migrate
        if ($info.PSObject.Properties['ram']) { $info.ram.transferred } else { 0 }
    }
}

AfterAll {
    Remove-TestRunDirectory $RunDir
}

Describe 'Move-KvmVM between QEMU 7.2 processes' {
    It 'migrates with -Compress <_> and the RAM is identical byte for byte' -ForEach 'None', 'Native' {
        $src = Start-TestSource -Name "src-$_"
        $null = Start-TestDestination -Name "dst-$_" -Paused
        $result = Move-KvmVM -Name $src.Name -Destination "dst-$_" -Compress $_ -PassThru @Slow

        $result.Status | Should -Be 'Completed'
        $result.Mode | Should -Be $_
        $result.DestinationState | Should -Be 'paused'
        $result.BytesTransferred | Should -BeGreaterThan 30MB -Because 'the guest filled 32 MiB with random data'
        $result.DirtySyncCount | Should -BeGreaterThan 1
        $result.Rounds.Count | Should -BeGreaterThan 1
        $result.Downtime | Should -BeLessThan ([TimeSpan]::FromSeconds(5))
        if ($_ -eq 'Native') {
            $result.Compression.CacheHits | Should -BeGreaterThan 0 -Because 'pages dirtied again were sent as XBZRLE deltas'
            $result.Compression.CacheSize | Should -Be 64MB
        }
        else {
            $result.Compression | Should -BeNullOrEmpty
        }
        (Get-KvmVM $src.Name).State | Should -Be 'postmigrate'
        Assert-SameMemory $src.Name "dst-$_"
    }

    It 'takes the VM from Get-KvmVM through the pipeline and the destination runs on' {
        $src = Start-TestSource -Name pipe-src
        $dst = Start-TestDestination -Name pipe-dst
        $before = Get-Heartbeat $src.SerialLog

        $result = Get-KvmVM pipe-src | Move-KvmVM -Destination $dst -PassThru

        $result.Status | Should -Be 'Completed'
        $result.DestinationState | Should -Be 'running'
        (Get-KvmVM pipe-dst).State | Should -Be 'running'
        # The guest goes on counting where it left off, now printing on the destination's serial port.
        Wait-Until { (Get-Heartbeat $dst.SerialLog) -gt $before } 'the heartbeat to continue on the destination'
        $first = Get-Heartbeat $dst.SerialLog
        Wait-Until { (Get-Heartbeat $dst.SerialLog) -gt $first } 'the heartbeat to keep advancing'
    }

    It 'writes a one-line summary and no object without -PassThru' {
        $src = Start-TestSource -Name quiet-src
        $null = Start-TestDestination -Name quiet-dst
        $output = Move-KvmVM quiet-src -Destination quiet-dst 6>&1
        @($output | Where-Object { $_ -isnot [Management.Automation.InformationRecord] }) | Should -BeNullOrEmpty
        "$($output | Where-Object { $_ -is [Management.Automation.InformationRecord] })" | Should -Match '^Moved quiet-src to quiet-dst'
    }

    It '-WhatIf changes nothing' {
        $src = Start-TestSource -Name whatif-src
        $null = Start-TestDestination -Name whatif-dst
        Move-KvmVM whatif-src -Destination whatif-dst -WhatIf
        (Get-KvmVM whatif-src).State | Should -Be 'running'
        (Get-KvmVM whatif-dst).State | Should -Be 'inmigrate'
        (Invoke-KvmQmp whatif-src query-migrate).PSObject.Properties['status'] | Should -BeNullOrEmpty
    }
}

Describe 'Move-KvmVM when things go wrong: the source keeps running' {
    It 'names an unreachable destination, with QEMU''s transport and with our tunnel' {
        $src = Start-TestSource -Name unreach-src
        { Move-KvmVM unreach-src -Destination 127.0.0.1:1 -Compress Native -ErrorAction Stop } |
            Should -Throw -ErrorId 'TokenRequired,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
        $token = 'LUMQfduicNvlRgHZqP--DE71xncBjpnS-kqYGw2tTDk'
        # A SecureString token is taken as well (and parsed: a wrong one would be InvalidMigrationToken).
        $secure = ConvertTo-SecureString $token -AsPlainText -Force
        { Move-KvmVM unreach-src -Destination 127.0.0.1:1 -Compress Delta -Token $secure -ErrorAction Stop } |
            Should -Throw -ErrorId 'TunnelConnectFailed,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
        (Get-KvmVM unreach-src).State | Should -Be 'running'
    }

    It 'names a destination that is not waiting for a migration' {
        $src = Start-TestSource -Name notwait-src
        $other = Start-TestSource -Name notwait-other
        { Move-KvmVM notwait-src -Destination notwait-other -ErrorAction Stop } |
            Should -Throw -ErrorId 'DestinationNotWaiting,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
    }

    It 'survives the destination being killed mid-migration, and can migrate again' {
        $src = Start-TestSource -Name kill-src
        $dst = Start-TestDestination -Name kill-dst
        $killer = Start-InBackground @"
`$deadline = [DateTime]::UtcNow.AddSeconds(60)
while ([DateTime]::UtcNow -lt `$deadline) {
    `$m = Invoke-KvmQmp -Name kill-src -Command query-migrate
    if (`$m.PSObject.Properties['ram'] -and `$m.ram.transferred -gt 4MB) { Stop-Process -Id $($dst.Pid) -Force; 'killed'; break }
    Start-Sleep -Milliseconds 50
}
"@
        try {
            $err = $null
            Move-KvmVM kill-src -Destination kill-dst -Bandwidth 4MB -ErrorAction SilentlyContinue -ErrorVariable err
            $killer.PowerShell.EndInvoke($killer.Handle) | Should -Be 'killed'
        }
        finally { $killer.PowerShell.Dispose() }

        $err[0].FullyQualifiedErrorId | Should -Be 'MigrationFailed,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
        $err[0].TargetObject.Status | Should -Be 'Failed'
        $err[0].TargetObject.SourceState | Should -Be 'running'
        "$($err[0])" | Should -Match 'Source is running'
        (Get-KvmVM kill-src).State | Should -Be 'running'
        $beat = Get-Heartbeat $src.SerialLog
        Wait-Until { (Get-Heartbeat $src.SerialLog) -gt $beat } 'the source guest to keep running'

        # Intact: it migrates again, and the copy matches byte for byte.
        $null = Start-TestDestination -Name kill-dst2 -Paused
        (Move-KvmVM kill-src -Destination kill-dst2 -PassThru @Slow).Status | Should -Be 'Completed'
        Assert-SameMemory kill-src kill-dst2
    }

    It 'cancels when stopped (Ctrl-C) and resumes nothing it should not' {
        $src = Start-TestSource -Name cancel-src
        $null = Start-TestDestination -Name cancel-dst
        $job = Start-InBackground 'Move-KvmVM cancel-src -Destination cancel-dst -Bandwidth 2MB'
        try {
            Wait-Until { (Get-MigrationTransferred cancel-src) -gt 2MB } 'the migration to get going'
            $job.PowerShell.Stop()
        }
        finally { $job.PowerShell.Dispose() }

        (Invoke-KvmQmp cancel-src query-migrate).status | Should -Be 'cancelled'
        (Get-KvmVM cancel-src).State | Should -Be 'running'
    }

    It 'cancels after -Timeout and says so' {
        $src = Start-TestSource -Name tmo-src
        $null = Start-TestDestination -Name tmo-dst
        { Move-KvmVM tmo-src -Destination tmo-dst -Bandwidth 2MB -Timeout 2 -ErrorAction Stop -WarningVariable script:tmoWarnings } |
            Should -Throw -ErrorId 'MigrationTimedOut,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
        (Get-KvmVM tmo-src).State | Should -Be 'running'
        # The cancel we asked for cuts QEMU's stream mid-page: expected, so not a tunnel failure warning.
        ($tmoWarnings -join "`n") | Should -Match 'cancelling'
        ($tmoWarnings -join "`n") | Should -Not -Match 'tunnel failed'
    }

    It 'with -TimeoutAction Pause pauses the guest, finishes, and the destination runs' {
        # 4 MB/s cannot keep up with a guest dirtying 8 MiB at 2,000 pages/s: it would never converge.
        $src = Start-TestSource -Name pause-src
        $null = Start-TestDestination -Name pause-dst
        $result = Move-KvmVM pause-src -Destination pause-dst -Bandwidth 4MB -MaxDowntime 0.05 -Timeout 3 -TimeoutAction Pause -PassThru
        $result.Status | Should -Be 'Completed'
        $result.TimedOut | Should -BeTrue
        $result.Converged | Should -BeFalse
        $result.Downtime | Should -BeGreaterThan ([TimeSpan]::FromMilliseconds(100)) -Because 'the guest was frozen from the forced pause on'
        (Get-KvmVM pause-dst).State | Should -Be 'running'
    }
}

Describe 'Move-KvmVM across QEMU versions' {
    It 'migrates from QEMU 7.2 into QEMU 10.0 with the same machine type, RAM identical' {
        Test-Path $Qemu10 | Should -BeTrue -Because 'build.ps1 unpacks QEMU 10.0 into .tools/qemu10'
        $src = Start-TestSource -Name x-src
        $dst = Start-TestDestination -Name x-dst -Paused -QemuPath $Qemu10
        $dst.QemuVersion | Should -Match '^10\.'
        $result = Move-KvmVM x-src -Destination x-dst -Compress Native -PassThru @Slow
        $result.Status | Should -Be 'Completed'
        Assert-SameMemory x-src x-dst
    }
}
